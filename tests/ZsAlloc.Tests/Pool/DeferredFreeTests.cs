namespace ZsAlloc.Tests.Pool;

public sealed class DeferredFreeTests
{
    [Fact]
    public void Deferred_handles_wait_in_the_queue_until_flushed()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 100 });
        var handles = Enumerable.Range(0, 10).Select(_ => pool.Malloc(500)).ToArray();
        foreach (uint handle in handles)
        {
            pool.FreeDeferred(handle);
        }

        ZsPoolStats queued = pool.GetStats();
        Assert.Equal(10, queued.DeferredQueueDepth);
        Assert.Equal(100, queued.DeferredQueueCapacity);
        Assert.Equal(10, queued.Objects);
        Assert.Throws<InvalidOperationException>(() => pool.Read(handles[0], new byte[1]));
        Assert.Throws<InvalidOperationException>(() => pool.FreeDeferred(handles[0]));
        Assert.Throws<InvalidOperationException>(() => pool.Free(handles[0]));

        pool.FlushDeferred();
        ZsPoolStats flushed = pool.GetStats();
        Assert.Equal(0, flushed.DeferredQueueDepth);
        Assert.Equal(0, flushed.Objects);
        Assert.Equal(0, pool.TotalPages);
    }

    [Fact]
    public void The_background_worker_drains_at_half_capacity()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 64 });
        var handles = Enumerable.Range(0, 40).Select(_ => pool.Malloc(300)).ToArray();
        for (int i = 0; i < 31; i++)
        {
            pool.FreeDeferred(handles[i]);
        }

        Assert.Equal(31, pool.GetStats().DeferredQueueDepth);
        pool.FreeDeferred(handles[31]);

        // The 32nd handle reached half of 64: a worker frees them without anyone flushing.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (pool.GetStats().Objects > 8 && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(5);
        }

        Assert.Equal(8, pool.GetStats().Objects);
        Assert.Equal(0, pool.GetStats().DeferredQueueDepth);
    }

    [Fact]
    public void Without_room_in_the_queue_the_free_is_synchronous()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 0 });
        uint handle = pool.Malloc(100);
        pool.FreeDeferred(handle);
        Assert.Equal(0, pool.GetStats().Objects);
        Assert.Equal(0, pool.TotalPages);
    }

    [Fact]
    public void Disposing_the_pool_flushes_the_queue()
    {
        var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 1000 });
        var handles = Enumerable.Range(0, 20).Select(_ => pool.Malloc(700)).ToArray();
        for (int i = 0; i < 15; i++)
        {
            pool.FreeDeferred(handles[i]);
        }

        Assert.Equal(20, pool.GetStats().Objects);
        pool.Dispose();
        Assert.Equal(5, pool.GetStats().Objects);
    }

    [Fact]
    public void Many_threads_deferring_at_once_lose_no_handle()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 256 });
        const int PerThread = 20_000;
        Parallel.For(0, 4, _ =>
        {
            for (int i = 0; i < PerThread; i++)
            {
                uint handle = pool.Malloc(64 + (i % 1000));
                pool.FreeDeferred(handle);
            }
        });

        pool.FlushDeferred();
        Assert.Equal(0, pool.GetStats().Objects);
        Assert.Equal(0, pool.TotalPages);
    }
}
