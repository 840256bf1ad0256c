using System.Runtime.InteropServices;
using ZramDaemon.Compression.Native;

namespace ZramDaemon.Compression;

/// <summary>LZ4 with caller-owned state (LZ4_compress_fast_extState), as the kernel's backend_lz4.c.</summary>
public sealed unsafe class Lz4CompressionStream : CompressionStream
{
    private readonly int _acceleration;
    private void* _state;

    public Lz4CompressionStream(int acceleration = Interop.Lz4.MinAcceleration)
    {
        _acceleration = acceleration;
        // LZ4 wants its state 8-byte aligned; LZ4_sizeofState gives the size of this library build.
        _state = NativeMemory.AlignedAlloc((nuint)Interop.Lz4.SizeOfState(), 64);
    }

    public override CompressionAlgorithm Algorithm => CompressionAlgorithm.Lz4;

    protected override int CompressCore(byte* src, int srcLength, byte* dst, int dstCapacity)
        => Interop.Lz4.CompressFastExtState(_state, src, dst, srcLength, dstCapacity, _acceleration);

    public override bool DecodesWithoutState => true;

    protected override int DecompressCore(byte* src, int srcLength, byte* dst, int dstCapacity)
        => DecompressBlock(src, srcLength, dst, dstCapacity);

    /// <summary>LZ4 and LZ4HC write the same block format; decoding needs no state.</summary>
    internal static int DecompressBlock(byte* src, int srcLength, byte* dst, int dstCapacity)
    {
        int n = Interop.Lz4.DecompressSafe(src, dst, srcLength, dstCapacity);
        return n < 0 ? -1 : n;
    }

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
