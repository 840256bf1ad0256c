using System.Runtime.InteropServices;
using ZramDaemon.Compression.Native;

namespace ZramDaemon.Compression;

/// <summary>LZ4HC at a fixed level with caller-owned state (LZ4_compress_HC_extStateHC), as backend_lz4hc.c.</summary>
public sealed unsafe class Lz4HcCompressionStream : CompressionStream
{
    private readonly int _level;
    private void* _state;

    public Lz4HcCompressionStream(int level = Interop.Lz4.HcDefaultLevel)
    {
        _level = level;
        _state = NativeMemory.AlignedAlloc((nuint)Interop.Lz4.SizeOfStateHC(), 64);
    }

    public override CompressionAlgorithm Algorithm => CompressionAlgorithm.Lz4Hc;

    protected override int CompressCore(byte* src, int srcLength, byte* dst, int dstCapacity)
        => Interop.Lz4.CompressHCExtStateHC(_state, src, dst, srcLength, dstCapacity, _level);

    public override bool DecodesWithoutState => true;

    protected override int DecompressCore(byte* src, int srcLength, byte* dst, int dstCapacity)
        => Lz4CompressionStream.DecompressBlock(src, srcLength, dst, dstCapacity);

    protected override void Dispose(bool disposing)
    {
        if (_state != null)
        {
            NativeMemory.AlignedFree(_state);
            _state = null;
        }

        base.Dispose(disposing);
    }
}
