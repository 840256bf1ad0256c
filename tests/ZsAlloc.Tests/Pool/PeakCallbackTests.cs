namespace ZsAlloc.Tests.Pool;

/// <summary>An exception out of <see cref="ZsPool.PeakPagesRaised"/>, which runs inside Malloc under the class lock.</summary>
public sealed class PeakCallbackTests
{
    /// <summary>
    /// AllocateSlot counts a new page (PageSource.AddResident), which calls PeakPagesRaised while Malloc holds the class
    /// lock, entered with Lock.Enter and no try/finally. A callback that throws (a bug, an OutOfMemoryException in the
    /// owner's bookkeeping) leaves the lock held by the thread that called Malloc: every other thread's Malloc or Free in
    /// that class waits forever, and the half-made allocation (slot taken, handle cell never written) is lost.
    /// </summary>
    [Fact]
    public void A_throwing_peak_callback_leaves_the_class_usable_by_other_threads()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 0 });
        bool fail = true;
        pool.PeakPagesRaised = () =>
        {
            if (fail)
            {
                throw new InvalidOperationException("the owner's bookkeeping failed");
            }
        };

        Assert.Throws<InvalidOperationException>(() => pool.Malloc(100));
        fail = false;

        // Another thread, as the daemon's next request would be: a Malloc of the same class.
        var other = new Thread(() => pool.Free(pool.Malloc(100))) { IsBackground = true };
        other.Start();
        Assert.True(other.Join(TimeSpan.FromSeconds(60)),
            "a Malloc on another thread still waits after 60 s: the class lock stayed held by the Malloc whose callback threw");
        Assert.Equal(0, pool.GetStats().Objects);
    }
}
