using Nbd.Devices;

namespace Zram.Benchmarks.Nbd;

/// <summary>The cheapest possible device, so that the benchmark measures the server's request path.</summary>
internal sealed class FlatMemoryDevice(int size) : IBlockDevice
{
    private readonly byte[] _data = new byte[size];

    public long Size => _data.Length;

    public bool IsReadOnly => false;

    public int MinimumBlockSize => 512;

    public int PreferredBlockSize => 4096;

    public bool SupportsFastZero => true;

    public NbdError Read(long offset, Span<byte> destination)
    {
        _data.AsSpan((int)offset, destination.Length).CopyTo(destination);
        return NbdError.None;
    }

    public NbdError Write(long offset, ReadOnlySpan<byte> source, bool fua)
    {
        source.CopyTo(_data.AsSpan((int)offset));
        return NbdError.None;
    }

    public NbdError Flush() => NbdError.None;

    public NbdError Trim(long offset, long length)
    {
        _data.AsSpan((int)offset, (int)length).Clear();
        return NbdError.None;
    }

    public NbdError WriteZeroes(long offset, long length, bool noHole, bool fastZero) => Trim(offset, length);

    public int GetExtents(long offset, long length, Span<BlockExtent> extents)
    {
        extents[0] = new BlockExtent(length, ExtentFlags.Allocated);
        return 1;
    }
}
