using ZramDaemon.Compression.Native;

namespace ZramDaemon.Compression;

/// <summary>
/// zstd at a fixed level with one compression and one decompression context, as backend_zstd.c. The
/// contexts grow their workspaces on first use, so the constructor compresses one page to do that up front.
/// </summary>
public sealed unsafe class ZstdCompressionStream : CompressionStream
{
    private readonly int _level;
    private nint _cctx;
    private nint _dctx;

    public ZstdCompressionStream(int level = Interop.Zstd.DefaultLevel)
        : this(level, decoder: false)
    {
    }

    /// <param name="decoder">Only the decompression context (<see cref="CompressionStream.CreateDecoder"/>): a frame
    /// decodes in it without growing it, so there is nothing to warm up.</param>
    private ZstdCompressionStream(int level, bool decoder)
        : base(decoder)
    {
        _level = level;
        _cctx = decoder ? 0 : Interop.Zstd.CreateCCtx();
        _dctx = Interop.Zstd.CreateDCtx();
        if ((_cctx == 0 && !decoder) || _dctx == 0)
        {
            Dispose();
            throw new OutOfMemoryException("zstd could not allocate its contexts.");
        }

        if (decoder)
        {
            return;
        }

        // Warm up: size both workspaces for a 4 KiB page now rather than on the first request.
        Span<byte> page = stackalloc byte[4096];
        page.Fill(0x5a);
        int n = Compress(page, BufferSize);
        if (n <= 0 || !Decompress(Buffer[..n], page))
        {
            Dispose();
            throw new InvalidOperationException("zstd failed to round-trip a page.");
        }
    }

    public override CompressionAlgorithm Algorithm => CompressionAlgorithm.Zstd;

    public override CompressionStream CreateDecoder() => new ZstdCompressionStream(_level, decoder: true);

    /// <summary>zstd needs room past its output: see <see cref="CompressionStream.FillsCapacityExactly"/>.</summary>
    protected override bool FillsCapacityExactly => false;

    protected override int CompressCore(byte* src, int srcLength, byte* dst, int dstCapacity)
    {
        nuint n = Interop.Zstd.CompressCCtx(_cctx, dst, (nuint)dstCapacity, src, (nuint)srcLength, _level);
        // dstSize_tooSmall is the expected failure (incompressible page); any error means "store it raw".
        return Interop.Zstd.IsError(n) != 0 ? 0 : (int)n;
    }

    protected override int DecompressCore(byte* src, int srcLength, byte* dst, int dstCapacity)
    {
        nuint n = Interop.Zstd.DecompressDCtx(_dctx, dst, (nuint)dstCapacity, src, (nuint)srcLength);
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
