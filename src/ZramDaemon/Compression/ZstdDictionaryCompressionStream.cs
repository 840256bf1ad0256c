using ZramDaemon.Compression.Native;

namespace ZramDaemon.Compression;

/// <summary>
/// zstd with a <see cref="ZstdDictionary"/>, each page one zstd compressed block without a frame around it
/// (ZSTD_compressBlock): the frame's magic number, header and block header (9 bytes with neither dictionary id nor
/// content size) say nothing the slot does not (its algorithm id, the page size), and pool size classes are 16 bytes
/// apart. A page zstd finds not worth a block is not stored this way (the slot keeps its object). Compression only
/// on the thread that holds the device's recompression lock (the dictionary's compression tables are made and
/// dropped under it).
/// </summary>
public sealed unsafe class ZstdDictionaryCompressionStream : CompressionStream
{
    private readonly ZstdDictionary _dictionary;
    private nint _cctx;
    private nint _dctx;

    public ZstdDictionaryCompressionStream(ZstdDictionary dictionary)
        : this(dictionary, decoder: false)
    {
    }

    /// <param name="decoder">Only the decompression context (<see cref="CompressionStream.CreateDecoder"/>).</param>
    private ZstdDictionaryCompressionStream(ZstdDictionary dictionary, bool decoder)
        : base(decoder)
    {
        ArgumentNullException.ThrowIfNull(dictionary);
        _dictionary = dictionary;
        _cctx = decoder ? 0 : Interop.Zstd.CreateCCtx();
        _dctx = Interop.Zstd.CreateDCtx();
        if ((_cctx == 0 && !decoder) || _dctx == 0)
        {
            Dispose();
            throw new OutOfMemoryException("zstd could not set up its contexts.");
        }
    }

    public override CompressionAlgorithm Algorithm => CompressionAlgorithm.ZstdDictionary;

    /// <summary>A decoder that shares the dictionary (its decompression tables are read-only): it must outlive it too.</summary>
    public override CompressionStream CreateDecoder() => new ZstdDictionaryCompressionStream(_dictionary, decoder: true);

    /// <summary>zstd needs room past its output: see <see cref="CompressionStream.FillsCapacityExactly"/>.</summary>
    protected override bool FillsCapacityExactly => false;

    protected override int CompressCore(byte* src, int srcLength, byte* dst, int dstCapacity)
    {
        // Every page starts afresh from the dictionary (the tables may have been dropped and made again since the
        // last one); the working tables are sized for one page, the dictionary's own are only referenced.
        if (Interop.Zstd.IsError(Interop.Zstd.CompressBeginUsingCDictAdvanced(_cctx, _dictionary.CompressionTables(), default, (ulong)srcLength)) != 0)
        {
            return 0;
        }

        // 0: not compressible as a block; an error: larger than dstCapacity. Either way the page is not stored so.
        nuint n = Interop.Zstd.CompressBlock(_cctx, dst, (nuint)dstCapacity, src, (nuint)srcLength);
        return Interop.Zstd.IsError(n) != 0 ? 0 : (int)n;
    }

    protected override int DecompressCore(byte* src, int srcLength, byte* dst, int dstCapacity)
    {
        if (Interop.Zstd.IsError(Interop.Zstd.DecompressBeginUsingDDict(_dctx, _dictionary.DDict)) != 0)
        {
            return -1;
        }

        nuint n = Interop.Zstd.DecompressBlock(_dctx, dst, (nuint)dstCapacity, src, (nuint)srcLength);
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
