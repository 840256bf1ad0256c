using Nbd.Devices;

namespace Nbd.Tests.Devices;

/// <summary>Wraps a device so that reads (or, with <paramref name="writes"/>, writes instead) wait until the test opens
/// the gate: a way to hold requests in flight.</summary>
public sealed class GatedDevice(IBlockDevice inner, bool writes = false) : IBlockDevice
{
    private readonly ManualResetEventSlim _gate = new(false);
    private int _waiting;
    private int _reached;

    public long Size => inner.Size;

    public bool IsReadOnly => inner.IsReadOnly;

    public int MinimumBlockSize => inner.MinimumBlockSize;

    public int PreferredBlockSize => inner.PreferredBlockSize;

    public bool SupportsFastZero => inner.SupportsFastZero;

    /// <summary>Requests blocked at the gate right now.</summary>
    public int Waiting => Volatile.Read(ref _waiting);

    /// <summary>Requests that have reached the gate (and gone through it, or are waiting there).</summary>
    public int Reached => Volatile.Read(ref _reached);

    public void Open() => _gate.Set();

    /// <summary>Waits (30 s at most) until <paramref name="count"/> requests are blocked at the gate: a reply can
    /// reach the client before a request sent with it has got this far.</summary>
    public async Task WaitUntilWaitingAsync(int count)
    {
        for (int i = 0; i < 3000 && Waiting != count; i++)
        {
            await Task.Delay(10);
        }

        Assert.Equal(count, Waiting);
    }

    public NbdError Read(long offset, Span<byte> destination)
    {
        if (!writes)
        {
            Wait();
        }

        return inner.Read(offset, destination);
    }

    public NbdError Write(long offset, ReadOnlySpan<byte> source, bool fua)
    {
        if (writes)
        {
            Wait();
        }

        return inner.Write(offset, source, fua);
    }

    private void Wait()
    {
        Interlocked.Increment(ref _reached);
        Interlocked.Increment(ref _waiting);
        _gate.Wait(TimeSpan.FromSeconds(30));
        Interlocked.Decrement(ref _waiting);
    }

    public NbdError Flush() => inner.Flush();

    public NbdError Trim(long offset, long length) => inner.Trim(offset, length);

    public NbdError WriteZeroes(long offset, long length, bool noHole, bool fastZero) => inner.WriteZeroes(offset, length, noHole, fastZero);

    public int GetExtents(long offset, long length, Span<BlockExtent> extents) => inner.GetExtents(offset, length, extents);
}
