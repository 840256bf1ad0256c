namespace ZsAlloc.Tests.Pool;

/// <summary>
/// Millions of random operations against a managed model of what every live handle must contain. Every read
/// is checked, and the pool's own accounting is checked against the model at intervals.
/// </summary>
public sealed class ZsPoolModelTests
{
    private readonly List<uint> _handles = [];
    private readonly List<int> _sizes = [];
    private readonly List<int> _seeds = [];
    private readonly byte[] _buffer = new byte[ZsPool.MaxObjectSize];
    private long _modelBytes;

    [Theory]
    [InlineData(8, 1, 2_000_000)]
    [InlineData(4, 2, 500_000)]
    [InlineData(16, 3, 500_000)]
    public void Random_operations_match_the_model(int chainLimit, int seed, int operations)
    {
        var random = new Random(seed);
        using var pool = new ZsPool(new ZsPoolOptions { ChainLimit = chainLimit, DeferredFreeCapacity = 256 });

        // Every size once, so every class and both sides of the huge watermark are exercised.
        for (int size = 1; size <= ZsPool.MaxObjectSize; size++)
        {
            Allocate(pool, size, random.Next());
        }

        long compactions = 0;
        for (int op = 0; op < operations; op++)
        {
            // Keep around 5,000..20,000 live objects: frees dominate above, allocations below.
            int live = _handles.Count;
            int roll = random.Next(100);
            int allocShare = live < 5_000 ? 70 : live > 20_000 ? 25 : 45;
            if (roll < allocShare)
            {
                Allocate(pool, RandomSize(random), random.Next());
            }
            else if (roll < allocShare + 12)
            {
                FreeAt(pool, random.Next(live), deferred: false);
            }
            else if (roll < allocShare + 16)
            {
                FreeAt(pool, random.Next(live), deferred: true);
            }
            else if (roll < allocShare + 18)
            {
                FreeBatch(pool, random, Math.Min(live, random.Next(1, 24)));
            }
            else if (roll < allocShare + 30)
            {
                VerifyAt(pool, random.Next(live));
            }
            else if (roll < allocShare + 38)
            {
                VerifyMapped(pool, random.Next(live), random);
            }
            else if (roll < allocShare + 45)
            {
                Rewrite(pool, random.Next(live), random);
            }
            else if (roll < allocShare + 46 && random.Next(200) == 0)
            {
                pool.FlushDeferred();
                IReadOnlyList<ZsClassStats> before = pool.GetClassStats();
                long expected = pool.CanCompact();
                long resident = pool.TotalPages;
                long freed = pool.Compact();
                Assert.Equal(resident - freed, pool.TotalPages);
                Assert.True(before.Sum(c => c.PagesUsed) - ZspagePages(pool) >= expected);
                CompactionTests.AssertCompacted(before, pool.GetClassStats());
                Assert.Equal(0, pool.CanCompact());
                // The descriptors of the zspages it emptied went back: the table ends at most a shrink's minimum (4
                // pages) past the mark (the live zspages, 1/128 more and a page of 204 descriptors).
                long zspages = pool.LiveZspages;
                Assert.True(pool.ZspageMetadataBytes < ((zspages + (zspages / 128) + 204) * 20) + (4 * 4096),
                    $"{pool.ZspageMetadataBytes} bytes of descriptors for {zspages} zspages after compaction");
                compactions++;
            }
            else if (random.Next(10_000) == 0)
            {
                pool.FlushDeferred();
                CheckAccounting(pool);
            }
        }

        pool.FlushDeferred();
        CheckAccounting(pool);
        Assert.True(compactions > 0);
        Assert.True(pool.GetStats().ObjectsMoved > 0, "compaction never moved an object: the test did not exercise it");
        for (int i = 0; i < _handles.Count; i++)
        {
            VerifyAt(pool, i);
        }

        while (_handles.Count > 0)
        {
            FreeAt(pool, _handles.Count - 1, deferred: false);
        }

        Assert.Equal(0, pool.TotalPages);
        Assert.Equal(0, pool.GetStats().BytesStored);
    }

    private static int RandomSize(Random random) => random.Next(10) switch
    {
        // Mostly what LZ4 makes of 4 KiB pages (a few hundred bytes to 3.5 KiB), some of everything else.
        < 6 => random.Next(200, 3600),
        < 8 => random.Next(1, ZsPool.MaxObjectSize + 1),
        < 9 => random.Next(1, 100),
        _ => random.Next(3500, ZsPool.MaxObjectSize + 1),
    };

    private void Allocate(ZsPool pool, int size, int seed)
    {
        uint handle = pool.Malloc(size);
        pool.Write(handle, TestPattern.Slice(seed, size));
        _handles.Add(handle);
        _sizes.Add(size);
        _seeds.Add(seed);
        _modelBytes += size;
    }

    /// <summary>A discarded range: <paramref name="count"/> random objects go to the deferred queue as one batch
    /// (capacity 256, drained at 128: a batch sometimes finds it full and the rest is freed at once).</summary>
    private void FreeBatch(ZsPool pool, Random random, int count)
    {
        var handles = new uint[count];
        var sizes = new int[count];
        for (int i = 0; i < count; i++)
        {
            int index = random.Next(_handles.Count);
            handles[i] = _handles[index];
            sizes[i] = _sizes[index];
            Forget(index);
        }

        pool.FreeDeferred(handles, sizes);
    }

    private void FreeAt(ZsPool pool, int index, bool deferred)
    {
        uint handle = _handles[index];
        if (deferred)
        {
            pool.FreeDeferred(handle);
        }
        else
        {
            pool.Free(handle);
        }

        Forget(index);
        Assert.Throws<InvalidOperationException>(() => pool.Read(handle, _buffer.AsSpan(0, 1)));
    }

    /// <summary>Drops the model's object at <paramref name="index"/> (the last one takes its place).</summary>
    private void Forget(int index)
    {
        _modelBytes -= _sizes[index];
        int last = _handles.Count - 1;
        _handles[index] = _handles[last];
        _sizes[index] = _sizes[last];
        _seeds[index] = _seeds[last];
        _handles.RemoveAt(last);
        _sizes.RemoveAt(last);
        _seeds.RemoveAt(last);
    }

    private void VerifyAt(ZsPool pool, int index)
    {
        int size = _sizes[index];
        Span<byte> back = _buffer.AsSpan(0, size);
        pool.Read(_handles[index], back);
        Assert.True(TestPattern.Slice(_seeds[index], size).SequenceEqual(back), $"object {index} of {size} bytes differs");
    }

    private void VerifyMapped(ZsPool pool, int index, Random random)
    {
        int size = _sizes[index];
        int length = random.Next(size + 1);
        using ZsReadView view = pool.MapRead(_handles[index], length, _buffer);
        Assert.True(TestPattern.Slice(_seeds[index], length).SequenceEqual(view.Span));
    }

    private void Rewrite(ZsPool pool, int index, Random random)
    {
        int seed = random.Next();
        int size = _sizes[index];
        pool.Write(_handles[index], TestPattern.Slice(seed, size));
        _seeds[index] = seed;
    }

    /// <summary>Pages of all zspages, written or not (what compaction frees and CanCompact promises).</summary>
    private static long ZspagePages(ZsPool pool) => pool.GetClassStats().Sum(c => c.PagesUsed);

    private void CheckAccounting(ZsPool pool)
    {
        ZsPoolStats stats = pool.GetStats();
        Assert.Equal(_handles.Count, stats.Objects);
        Assert.Equal(_modelBytes, stats.BytesStored);
        Assert.Equal(0, stats.DeferredQueueDepth);
        IReadOnlyList<ZsClassStats> classes = pool.GetClassStats();
        Assert.Equal(pool.TotalPages, classes.Sum(c => c.PagesResident));
        Assert.Equal(stats.Objects, classes.Sum(c => c.ObjUsed));
        foreach (ZsClassStats c in classes)
        {
            Assert.True(c.ObjUsed <= c.ObjAllocated);
            // Written pages hold at least the live objects' slots, and no zspage counts more than its run.
            Assert.InRange(c.PagesResident, c.ObjUsed * c.Size / 4096, c.PagesUsed);
            Assert.Equal(c.PagesUsed / c.PagesPerZspage, c.ZspagesByFullness.Sum());
            Assert.Equal(0, c.ZspagesByFullness[0]);
        }
    }
}
