using Nbd.Devices;

namespace Nbd.Tests.Devices;

/// <summary>Wraps a device and records which thread ran each write, in the order they ran.</summary>
public sealed class ThreadRecordingDevice(IBlockDevice inner, int capacity) : IBlockDevice
{
    private readonly int[] _threads = new int[capacity];
    private int _count;

    public long Size => inner.Size;

    public bool IsReadOnly => inner.IsReadOnly;

    public int MinimumBlockSize => inner.MinimumBlockSize;

    public int PreferredBlockSize => inner.PreferredBlockSize;

    public bool SupportsFastZero => inner.SupportsFastZero;

    /// <summary>The managed thread id of each write so far, in order.</summary>
    public int[] Threads => _threads.AsSpan(0, Math.Min(Volatile.Read(ref _count), _threads.Length)).ToArray();

    public NbdError Read(long offset, Span<byte> destination) => inner.Read(offset, destination);

    public NbdError Write(long offset, ReadOnlySpan<byte> source, bool fua)
    {
        int i = Interlocked.Increment(ref _count) - 1;
        if (i < _threads.Length)
        {
            _threads[i] = Environment.CurrentManagedThreadId;
        }

        return inner.Write(offset, source, fua);
    }

    public NbdError Flush() => inner.Flush();

    public NbdError Trim(long offset, long length) => inner.Trim(offset, length);

    public NbdError WriteZeroes(long offset, long length, bool noHole, bool fastZero) => inner.WriteZeroes(offset, length, noHole, fastZero);

    public int GetExtents(long offset, long length, Span<BlockExtent> extents) => inner.GetExtents(offset, length, extents);
}
