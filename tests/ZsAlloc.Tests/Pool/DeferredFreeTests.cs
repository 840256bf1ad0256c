namespace ZsAlloc.Tests.Pool;

public sealed class DeferredFreeTests
{
    /// <summary>Waits (30 s at most: the worker is a thread-pool item on a loaded machine) until the pool holds
    /// <paramref name="objects"/> objects, and asserts it.</summary>
    private static void WaitForObjects(ZsPool pool, long objects)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (pool.GetStats().Objects > objects && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(5);
        }

        Assert.Equal(objects, pool.GetStats().Objects);
    }

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
        WaitForObjects(pool, 8);
        Assert.Equal(0, pool.GetStats().DeferredQueueDepth);
    }

    [Fact]
    public void The_byte_budget_bounds_what_queued_garbage_holds_whatever_the_scheduler_does()
    {
        // Capacity 1000: 100 frees stay far below the count threshold (500), so without the byte budget all
        // 100 objects (about 100 KiB of slots) would wait in the queue for a flush.
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 1000 });
        var handles = Enumerable.Range(0, 110).Select(_ => pool.Malloc(1000)).ToArray();
        int slot = pool.GetClassStats().Single(c => c.ObjUsed == 110).Size;
        const long Budget = 10 * 1024;
        pool.DeferredFreeByteBudget = Budget;
        for (int i = 0; i < 100; i++)
        {
            pool.FreeDeferred(handles[i]);
            ZsPoolStats stats = pool.GetStats();
            Assert.True(stats.DeferredQueueBytes <= Budget, $"after {i + 1} frees the queue holds {stats.DeferredQueueBytes} bytes, over its budget of {Budget}");
            Assert.True(stats.DeferredQueueDepth <= Budget / slot);
        }

        // Past the budget the frees were synchronous (or drained): at most a budget's worth still waits.
        Assert.True(pool.GetStats().Objects <= 10 + (Budget / slot));

        pool.FlushDeferred();
        Assert.Equal(0, pool.GetStats().DeferredQueueBytes);
        Assert.Equal(10, pool.GetStats().Objects);
    }

    [Fact]
    public void Queued_bytes_are_the_slots_the_objects_hold_and_a_flush_counts_them_off()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 1000 });
        Assert.Equal(long.MaxValue, pool.DeferredFreeByteBudget);
        var handles = Enumerable.Range(0, 5).Select(_ => pool.Malloc(1000)).Append(pool.Malloc(4096)).ToArray();
        int slot = pool.GetClassStats().Single(c => c.ObjUsed == 5).Size;
        foreach (uint handle in handles)
        {
            pool.FreeDeferred(handle);
        }

        Assert.Equal(6, pool.GetStats().DeferredQueueDepth);
        Assert.Equal((5L * slot) + 4096, pool.GetStats().DeferredQueueBytes);
        pool.FlushDeferred();
        Assert.Equal(0, pool.GetStats().DeferredQueueBytes);
        Assert.Equal(0, pool.GetStats().Objects);
    }

    [Fact]
    public void The_background_worker_drains_at_half_the_byte_budget()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 1000 });
        var handles = Enumerable.Range(0, 40).Select(_ => pool.Malloc(2000)).ToArray();
        int slot = pool.GetClassStats().Single(c => c.ObjUsed == 40).Size;
        pool.DeferredFreeByteBudget = 20L * slot;
        for (int i = 0; i < 11; i++)
        {
            pool.FreeDeferred(handles[i]);
        }

        // 11 slots passed half of a 20-slot budget: a worker frees them without anyone flushing.
        WaitForObjects(pool, 29);
        Assert.Equal(0, pool.GetStats().DeferredQueueBytes);
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
