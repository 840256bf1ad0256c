namespace ZsAlloc.Tests.Pool;

/// <summary>A <see cref="ZsPool.DeferredGrowthAllowed"/> that throws, seen from the pool's deferred frees.</summary>
public sealed class DeferredGrowthCheckTests
{
    /// <summary>
    /// FreeDeferred marks the cell FreePending, then offers the handle to the queue, which asks DeferredGrowthAllowed
    /// before it counts its first page of entries. When that throws, the queue now lets its lock go, but the pool neither
    /// queued nor freed the object: it stays stored (its slot, its zspage's pages, Objects and BytesStored) for the pool's
    /// life, and the cell's pending mark refuses every later Free or FreeDeferred of the handle, so nothing can free it.
    /// </summary>
    [Fact]
    public void A_single_deferred_free_whose_growth_check_throws_still_frees_the_object()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 1024 });
        uint handle = pool.Malloc(500);
        pool.DeferredGrowthAllowed = _ => throw new InvalidOperationException("growth check failed");

        Assert.Throws<InvalidOperationException>(() => pool.FreeDeferred(handle));
        pool.DeferredGrowthAllowed = null;
        pool.FlushDeferred();

        ZsPoolStats stats = pool.GetStats();
        Assert.True(stats.Objects == 0 && pool.TotalPages == 0,
            $"{stats.Objects} object(s) of {stats.BytesStored} bytes and {pool.TotalPages} page(s) left after the handle's only free: "
            + "marked pending, neither queued nor freed, and no call can free it any more");
        ZsPoolInspector.Check(pool);
    }

    /// <summary>
    /// The batched FreeDeferred queues the handles (unmarked) a batch at a time; when the growth check throws in a batch,
    /// the handles of that batch and of every later one are neither queued nor freed, and the caller, who passed them all
    /// and cannot tell how far the call got, holds them as freed.
    /// </summary>
    [Fact]
    public void A_batched_deferred_free_whose_growth_check_throws_still_frees_every_object()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 4096 });
        var handles = new uint[600];
        var sizes = new int[handles.Length];
        for (int i = 0; i < handles.Length; i++)
        {
            sizes[i] = 100;
            handles[i] = pool.Malloc(sizes[i]);
        }

        pool.DeferredGrowthAllowed = _ => throw new InvalidOperationException("growth check failed");
        Assert.Throws<InvalidOperationException>(() => pool.FreeDeferred(handles, sizes));
        pool.DeferredGrowthAllowed = null;
        pool.FlushDeferred();

        ZsPoolStats stats = pool.GetStats();
        Assert.True(stats.Objects == 0 && pool.TotalPages == 0,
            $"{stats.Objects} of the {handles.Length} objects passed to FreeDeferred are still stored ({pool.TotalPages} pages)");
        ZsPoolInspector.Check(pool);
    }
}
