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

        // 11 slots passed half of a 20-slot budget: a worker frees them without anyone flushing. The drain counts
        // the bytes off after its batch's last free, a moment after the objects: wait for both.
        WaitForObjects(pool, 29);
        Assert.True(SpinWait.SpinUntil(() => pool.GetStats().DeferredQueueBytes == 0, TimeSpan.FromSeconds(30)), "the drained objects' bytes stayed counted");
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

    [Fact]
    public void A_batch_goes_into_the_queue_up_to_its_capacity_and_the_rest_is_freed_at_once()
    {
        // Capacity 100: the worker drains at 50, so the 40-handle batch below stays queued whole.
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 100 });
        var handles = Enumerable.Range(0, 200).Select(_ => pool.Malloc(500)).ToArray();
        var sizes = Enumerable.Repeat(500, 200).ToArray();
        int slot = pool.GetClassStats().Single(c => c.ObjUsed == 200).Size;
        pool.FreeDeferred(handles.AsSpan(0, 40), sizes.AsSpan(0, 40));
        Assert.Equal(40, pool.GetStats().DeferredQueueDepth);
        Assert.Equal(40L * slot, pool.GetStats().DeferredQueueBytes);
        Assert.Equal(200, pool.GetStats().Objects);

        // 120 more: the queue has room for 60; the other 60 are freed before the call returns, so what is left is
        // the survivors plus what the queue (or a drain that has taken it off but not yet freed it) still holds.
        // The queue's bytes are counted off only after their objects are freed, so reading them first bounds the
        // objects read after, whatever a running drain does in between (its depth alone does not: a drain may hold
        // the whole queue).
        pool.FreeDeferred(handles.AsSpan(40, 120), sizes.AsSpan(40, 120));
        long pending = pool.GetStats().DeferredQueueBytes / slot;
        ZsPoolStats stats = pool.GetStats();
        Assert.True(stats.DeferredQueueDepth <= 100);
        Assert.True(pending <= 100, $"{pending} objects waiting to be freed with a capacity of 100");
        Assert.True(stats.Objects <= 40 + pending,
            $"{stats.Objects} objects with {pending} waiting to be freed: the handles the queue could not take were not freed");

        pool.FlushDeferred();
        Assert.Equal(0, pool.GetStats().DeferredQueueDepth);
        Assert.Equal(0, pool.GetStats().DeferredQueueBytes);
        Assert.Equal(40, pool.GetStats().Objects);
        Assert.Equal(40L * 500, pool.GetStats().BytesStored);

        // The batch's handles are freed for good: refused like any freed handle.
        Assert.Throws<InvalidOperationException>(() => pool.Free(handles[0]));
        Assert.Throws<InvalidOperationException>(() => pool.Read(handles[159], new byte[1]));
        foreach (uint handle in handles.AsSpan(160))
        {
            pool.Free(handle);
        }

        Assert.Equal(0, pool.TotalPages);
    }

    [Fact]
    public void A_batch_with_the_queue_off_is_freed_before_the_call_returns()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 0 });
        var handles = Enumerable.Range(0, 300).Select(i => pool.Malloc(1 + (i * 13 % 4096))).ToArray();
        var sizes = Enumerable.Range(0, 300).Select(i => 1 + (i * 13 % 4096)).ToArray();
        pool.FreeDeferred(handles, sizes);
        Assert.Equal(0, pool.GetStats().Objects);
        Assert.Equal(0, pool.TotalPages);
    }

    [Fact]
    public void A_batch_stays_within_the_byte_budget()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 1000 });
        var handles = Enumerable.Range(0, 100).Select(_ => pool.Malloc(1000)).ToArray();
        var sizes = Enumerable.Repeat(1000, 100).ToArray();
        int slot = pool.GetClassStats().Single(c => c.ObjUsed == 100).Size;
        long budget = 30L * slot;
        pool.DeferredFreeByteBudget = budget;
        pool.FreeDeferred(handles.AsSpan(0, 80), sizes.AsSpan(0, 80));
        ZsPoolStats stats = pool.GetStats();
        Assert.True(stats.DeferredQueueBytes <= budget, $"the queue holds {stats.DeferredQueueBytes} bytes, over its budget of {budget}");
        Assert.True(stats.Objects <= 20 + 30, $"{stats.Objects} objects: past the budget the batch was not freed at once");

        pool.FlushDeferred();
        Assert.Equal(20, pool.GetStats().Objects);
        Assert.Equal(0, pool.GetStats().DeferredQueueBytes);
    }

    [Fact]
    public void A_batch_is_checked_before_anything_is_queued()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 100 });
        uint a = pool.Malloc(100);
        uint b = pool.Malloc(200);
        Assert.Throws<ArgumentException>(() => pool.FreeDeferred([a, b], [100]));
        Assert.Throws<ArgumentException>(() => pool.FreeDeferred([a, b + 100], [100, 200]));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.FreeDeferred([a, b], [100, 0]));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.FreeDeferred([a, b], [100, 4097]));
        Assert.Equal(0, pool.GetStats().DeferredQueueDepth);
        Assert.Equal(2, pool.GetStats().Objects);
        pool.FreeDeferred([a, b], [100, 200]);
        pool.FlushDeferred();
        Assert.Equal(0, pool.GetStats().Objects);
    }

    [Fact]
    public void Compaction_moves_queued_objects_and_the_drain_frees_them_where_they_are()
    {
        // Queue every other object of a class as one batch (nothing drains: capacity 10,000), compact while they
        // wait: the zspages are half empty, so compaction moves objects, queued ones among them (their cells are not
        // marked). The drain must then free each at its new location, and the survivors keep their bytes.
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 10_000 });
        const int Count = 2000;
        var handles = new uint[Count];
        var data = new byte[700];
        for (int i = 0; i < Count; i++)
        {
            handles[i] = pool.Malloc(700);
            data.AsSpan().Fill((byte)i);
            pool.Write(handles[i], data);
        }

        // Free all but every fourth synchronously, so zspages are a quarter full; queue half of the survivors.
        var queued = new List<uint>();
        var kept = new List<int>();
        for (int i = 0; i < Count; i++)
        {
            if (i % 4 != 0)
            {
                pool.Free(handles[i]);
            }
            else if (i % 8 == 0)
            {
                queued.Add(handles[i]);
            }
            else
            {
                kept.Add(i);
            }
        }

        pool.FreeDeferred(queued.ToArray(), Enumerable.Repeat(700, queued.Count).ToArray());
        Assert.Equal(queued.Count, pool.GetStats().DeferredQueueDepth);
        long freed = pool.Compact();
        Assert.True(freed > 0 && pool.GetStats().ObjectsMoved > kept.Count / 2,
            $"compaction freed {freed} pages and moved {pool.GetStats().ObjectsMoved} objects: queued ones cannot all have stayed");

        pool.FlushDeferred();
        Assert.Equal(kept.Count, pool.GetStats().Objects);
        Assert.Equal(kept.Count * 700L, pool.GetStats().BytesStored);
        var back = new byte[700];
        foreach (int i in kept)
        {
            pool.Read(handles[i], back);
            Assert.True(back.AsSpan().IndexOfAnyExcept((byte)i) < 0, $"object {i} changed");
        }

        foreach (uint handle in queued)
        {
            Assert.Throws<InvalidOperationException>(() => pool.Free(handle));
        }

        // The classes' counts agree with what is left: every queued slot went back to its zspage.
        Assert.Equal(kept.Count, pool.GetClassStats().Sum(c => c.ObjUsed));
        Assert.Equal(pool.TotalPages, pool.GetClassStats().Sum(c => c.PagesResident));
    }
}
