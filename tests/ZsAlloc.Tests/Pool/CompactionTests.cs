namespace ZsAlloc.Tests.Pool;

public sealed class CompactionTests
{
    [Fact]
    public void Compaction_frees_what_zs_can_compact_promised_and_keeps_every_object()
    {
        using var pool = new ZsPool();
        var random = new Random(7);
        var live = new List<(ulong Handle, int Size)>();
        for (int i = 0; i < 20_000; i++)
        {
            int size = random.Next(300, 2000);
            ulong handle = pool.Malloc(size);
            pool.Write(handle, TestPattern.Slice((int)handle, size));
            live.Add((handle, size));
        }

        long pagesFull = pool.TotalPages;
        var kept = new List<(ulong Handle, int Size)>();
        foreach ((ulong handle, int size) in live)
        {
            if (random.Next(2) == 0)
            {
                pool.Free(handle);
            }
            else
            {
                kept.Add((handle, size));
            }
        }

        long canCompact = pool.CanCompact();
        long before = pool.TotalPages;
        Assert.True(canCompact > before / 4, $"only {canCompact} of {before} pages freeable after freeing half");
        Assert.Equal(canCompact, pool.GetClassStats().Sum(c => c.Freeable));

        long freed = pool.Compact();
        Assert.Equal(canCompact, freed);
        Assert.Equal(before - freed, pool.TotalPages);
        Assert.Equal(0, pool.CanCompact());
        ZsPoolStats stats = pool.GetStats();
        Assert.Equal(freed, stats.PagesCompacted);
        Assert.Equal(1, stats.CompactionRuns);
        Assert.True(stats.ObjectsMoved > 0);
        Assert.True(pool.TotalPages < pagesFull * 6 / 10);

        var back = new byte[4096];
        foreach ((ulong handle, int size) in kept)
        {
            pool.Read(handle, back.AsSpan(0, size));
            Assert.True(TestPattern.Slice((int)handle, size).SequenceEqual(back.AsSpan(0, size)));
        }
    }

    [Fact]
    public void Fullness_bands_follow_the_kernels_ratio_groups()
    {
        using var pool = new ZsPool();
        // Class 32 (payload up to 24 bytes): one page, 128 objects. 13 objects = 10% -> band 2 (the kernel's 20% group).
        var handles = Enumerable.Range(0, 13).Select(_ => pool.Malloc(24)).ToArray();
        ZsClassStats row = pool.GetClassStats()[0];
        Assert.Equal(32, row.Size);
        Assert.Equal(1, row.ZspagesByFullness[2]);
        pool.Free(handles[0]);
        row = pool.GetClassStats()[0];
        Assert.Equal(1, row.ZspagesByFullness[1]);
        Assert.Equal(128, row.ObjAllocated);
        Assert.Equal(12, row.ObjUsed);
        Assert.Equal(0, row.Freeable);
        Assert.StartsWith("    0    32         1         0", row.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Peak_pages_remember_the_high_water_mark_until_reset()
    {
        using var pool = new ZsPool();
        var handles = Enumerable.Range(0, 10).Select(_ => pool.Malloc(4000)).ToArray();
        foreach (ulong handle in handles)
        {
            pool.Free(handle);
        }

        Assert.Equal(0, pool.TotalPages);
        Assert.Equal(10, pool.PeakPages);
        pool.ResetPeak();
        Assert.Equal(0, pool.PeakPages);
        Assert.True(pool.MetadataBytes > 0);
    }
}
