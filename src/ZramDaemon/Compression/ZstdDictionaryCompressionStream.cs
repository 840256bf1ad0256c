using ZramDaemon.Compression.Native;

namespace ZramDaemon.Compression;

/// <summary>
/// zstd with a <see cref="ZstdDictionary"/>: frames without the dictionary id and the content size (the slot records
/// which dictionary and the page size), six bytes less per page than plain frames. Compression only on the thread that
/// holds the device's recompression lock (the dictionary's compression tables are made and dropped under it).
/// </summary>
public sealed unsafe class ZstdDictionaryCompressionStream : CompressionStream
{
    private readonly ZstdDictionary _dictionary;
    private nint _cctx;
    private nint _dctx;
    private nint _referenced;

    public ZstdDictionaryCompressionStream(ZstdDictionary dictionary)
    {
        ArgumentNullException.ThrowIfNull(dictionary);
        _dictionary = dictionary;
        _cctx = Interop.Zstd.CreateCCtx();
        _dctx = Interop.Zstd.CreateDCtx();
        if (_cctx == 0 || _dctx == 0
            || Interop.Zstd.IsError(Interop.Zstd.CCtxSetParameter(_cctx, Interop.Zstd.ContentSizeFlagParameter, 0)) != 0
            || Interop.Zstd.IsError(Interop.Zstd.CCtxSetParameter(_cctx, Interop.Zstd.DictIdFlagParameter, 0)) != 0)
        {
            Dispose();
            throw new OutOfMemoryException("zstd could not set up its contexts.");
        }
    }

    public override CompressionAlgorithm Algorithm => CompressionAlgorithm.ZstdDictionary;

    protected override int CompressCore(byte* src, int srcLength, byte* dst, int dstCapacity)
    {
        // The tables may have been dropped and made again since the last page: reference them again then. A frame
        // that did not fit leaves the context mid-frame, where it refuses a dictionary: end that session first.
        nint tables = _dictionary.CompressionTables();
        if (tables != _referenced)
        {
            _referenced = 0;
            if (Interop.Zstd.IsError(Interop.Zstd.CCtxReset(_cctx, Interop.Zstd.ResetSessionOnly)) != 0
                || Interop.Zstd.IsError(Interop.Zstd.CCtxRefCDict(_cctx, tables)) != 0)
            {
                return 0;
            }

            _referenced = tables;
        }

        nuint n = Interop.Zstd.Compress2(_cctx, dst, (nuint)dstCapacity, src, (nuint)srcLength);
        if (Interop.Zstd.IsError(n) != 0)
        {
            // compress2 starts each page with a session reset of its own; this only makes the next call check again.
            _referenced = 0;
            return 0;
        }

        return (int)n;
    }

    protected override int DecompressCore(byte* src, int srcLength, byte* dst, int dstCapacity)
    {
        nuint n = Interop.Zstd.DecompressUsingDDict(_dctx, dst, (nuint)dstCapacity, src, (nuint)srcLength, _dictionary.DDict);
        return Interop.Zstd.IsError(n) != 0 ? -1 : (int)n;
    }

    protected override void Dispose(bool disposing)
    {
        if (_cctx != 0)
        {
            Interop.Zstd.FreeCCtx(_cctx);
            _cctx = 0;
        }

        if (_dctx != 0)
        {
            Interop.Zstd.FreeDCtx(_dctx);
            _dctx = 0;
        }

        base.Dispose(disposing);
    }
}
