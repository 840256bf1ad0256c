namespace ZsAlloc.Tests.Pool;

public sealed class CompactionTests
{
    [Fact]
    public void Compaction_frees_what_zs_can_compact_promised_gathers_the_rest_and_keeps_every_object()
    {
        using var pool = new ZsPool();
        var random = new Random(7);
        var live = new List<(uint Handle, int Size)>();
        for (int i = 0; i < 40_000; i++)
        {
            int size = random.Next(300, 2000);
            uint handle = pool.Malloc(size);
            pool.Write(handle, TestPattern.Slice((int)handle, size));
            live.Add((handle, size));
        }

        long pagesFull = pool.TotalPages;
        var kept = new List<(uint Handle, int Size)>();
        foreach ((uint handle, int size) in live)
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
        IReadOnlyList<ZsClassStats> classes = pool.GetClassStats();
        long before = classes.Sum(c => c.PagesUsed);
        long untouched = before - pool.TotalPages;
        long residentBefore = pool.TotalPages;
        Assert.True(canCompact > before / 4, $"only {canCompact} of {before} pages freeable after freeing half");
        Assert.Equal(canCompact, classes.Sum(c => c.Freeable));

        long freed = pool.Compact();
        IReadOnlyList<ZsClassStats> after = pool.GetClassStats();
        Assert.Equal(residentBefore - freed, pool.TotalPages);
        AssertCompacted(classes, after);
        Assert.True(before - after.Sum(c => c.PagesUsed) >= canCompact);
        _ = untouched;
        Assert.Equal(0, pool.CanCompact());
        ZsPoolStats stats = pool.GetStats();
        Assert.Equal(freed, stats.PagesCompacted);
        Assert.Equal(1, stats.CompactionRuns);
        Assert.True(stats.ObjectsMoved > 0);
        Assert.True(pool.TotalPages < pagesFull * 6 / 10, $"{pool.TotalPages} of {pagesFull} pages after compaction; {residentBefore} before, freed {freed}, used {pool.GetClassStats().Sum(c => c.PagesUsed)}");

        var back = new byte[4096];
        foreach ((uint handle, int size) in kept)
        {
            pool.Read(handle, back.AsSpan(0, size));
            Assert.True(TestPattern.Slice((int)handle, size).SequenceEqual(back.AsSpan(0, size)));
        }
    }

    /// <summary>
    /// What every compaction without an open view must leave (also checked by the model test): in each class the
    /// zspages emptied are those zs_can_compact promised, or one more (the zspage the leftover freed slots were
    /// gathered from, when the others' freed slots took all its objects); no freed slot is left inside written
    /// pages; every zspage but one is full and that one is written only up to its last object.
    /// </summary>
    internal static void AssertCompacted(IReadOnlyList<ZsClassStats> before, IReadOnlyList<ZsClassStats> after)
    {
        for (int i = 0; i < after.Count; i++)
        {
            ZsClassStats b = before[i], c = after[i];
            long zspagesFreed = b.PagesUsed - c.PagesUsed;
            Assert.True(zspagesFreed == b.Freeable || zspagesFreed == b.Freeable + b.PagesPerZspage,
                $"class {c.Size}: {zspagesFreed} pages of zspages freed, {b.Freeable} promised");
            Assert.True(c.ObjAllocated - c.ObjUsed - c.ObjUntouched == 0,
                $"class {c.Size}: {c.ObjAllocated - c.ObjUsed - c.ObjUntouched} freed slots left in written pages");
            long zspages = c.PagesUsed / c.PagesPerZspage;
            if (zspages > 0 && c.Size < 4096)
            {
                long perZspage = c.ObjAllocated / zspages;
                long inLast = c.ObjUsed - ((zspages - 1) * perZspage);
                long bound = ((zspages - 1) * c.PagesPerZspage) + (((inLast * c.Size) + 4095) / 4096);
                Assert.True(c.PagesResident <= bound, $"class {c.Size}: {c.PagesResident} pages counted, at most {bound} needed");
            }
        }
    }

    [Fact]
    public void Compaction_gathers_the_freed_slots_it_cannot_empty_a_zspage_with_into_one_tail()
    {
        // Class 3632: 9 slots over 8 pages a zspage (default 16-page chains). Two full zspages, A then B.
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 0 });
        var handles = Enumerable.Range(0, 18).Select(i =>
        {
            uint h = pool.Malloc(3624);
            pool.Write(h, TestPattern.Slice(i, 3624));
            return h;
        }).ToArray();
        Assert.Equal(16, pool.TotalPages);

        // A keeps 6 (slots 1, 3, 5 freed), B keeps 5 (slots 0, 2, 4, 6 freed): 7 freed slots, less than a zspage
        // holds, so zs_can_compact promises nothing, and before this each zspage kept its 8 pages.
        int[] freedSlots = [1, 3, 5, 9, 11, 13, 15];
        foreach (int i in freedSlots)
        {
            pool.Free(handles[i]);
        }

        Assert.Equal(0, pool.CanCompact());
        ZsClassStats before = Assert.Single(pool.GetClassStats(), c => c.Size == 3632);
        Assert.Equal(7, before.ObjAllocated - before.ObjUsed - before.ObjUntouched);

        // B (the emptiest) gives its three highest objects to A's freed slots and its fourth to its own slot 0:
        // B holds slots 0 and 1, which end in its page 1; its pages 2..7 go back.
        long freed = pool.Compact();
        Assert.Equal(6, freed);
        Assert.Equal(10, pool.TotalPages);
        ZsClassStats after = Assert.Single(pool.GetClassStats(), c => c.Size == 3632);
        Assert.Equal(16, after.PagesUsed);
        Assert.Equal(10, after.PagesResident);
        Assert.Equal(7, after.ObjUntouched);
        Assert.Equal(0, after.ObjAllocated - after.ObjUsed - after.ObjUntouched);
        Assert.Equal(4, pool.GetStats().ObjectsMoved);

        var back = new byte[3624];
        for (int i = 0; i < handles.Length; i++)
        {
            if (!freedSlots.Contains(i))
            {
                pool.Read(handles[i], back);
                Assert.True(TestPattern.Slice(i, 3624).SequenceEqual(back), $"object {i} after compaction");
            }
        }

        // B's freed end is a tail again: the next object takes slot 2 and writes (and counts) one page more.
        uint next = pool.Malloc(3624);
        pool.Write(next, TestPattern.Slice(99, 3624));
        Assert.Equal(11, pool.TotalPages);
        pool.Read(next, back);
        Assert.True(TestPattern.Slice(99, 3624).SequenceEqual(back));
        // A second compaction finds nothing more to do.
        Assert.Equal(0, pool.Compact());
    }

    [Fact]
    public void Fullness_bands_follow_the_kernels_ratio_groups()
    {
        using var pool = new ZsPool();
        // Class 32 (payload up to 28 bytes): one page, 128 objects. 13 objects = 10% -> band 2 (the kernel's 20% group).
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
        Assert.StartsWith("     0    32         1         0", row.ToString(), StringComparison.Ordinal);

        // Class numbers are the kernel's: (size - 32) / 16, so the huge class is 254 and 3632 is 225.
        IReadOnlyList<ZsClassStats> rows = pool.GetClassStats();
        Assert.Equal(254, rows[^1].Class);
        Assert.Equal(225, Assert.Single(rows, r => r.Size == 3632).Class);
    }

    [Fact]
    public void Peak_pages_remember_the_high_water_mark_until_reset()
    {
        using var pool = new ZsPool();
        var handles = Enumerable.Range(0, 10).Select(_ => pool.Malloc(4000)).ToArray();
        foreach (uint handle in handles)
        {
            pool.Free(handle);
        }

        Assert.Equal(0, pool.TotalPages);
        Assert.Equal(10, pool.PeakPages);
        pool.ResetPeak();
        Assert.Equal(0, pool.PeakPages);
        Assert.True(pool.MetadataBytes > 0);
    }

    [Fact]
    public void An_open_view_does_not_hang_compaction_or_a_reader_of_a_neighbour()
    {
        using var pool = new ZsPool();
        // Payload 1020 + header = 1024, a power of two: 4 objects a page, one page a zspage (whatever the chain limit). Two zspages; free three of the second:
        // it becomes the emptiest zspage, the source of compaction.
        var handles = Enumerable.Range(0, 8).Select(i =>
        {
            uint h = pool.Malloc(1020);
            pool.Write(h, TestPattern.Slice(i, 1020));
            return h;
        }).ToArray();
        pool.Free(handles[1]);
        pool.Free(handles[2]);
        pool.Free(handles[5]);
        pool.Free(handles[6]);
        pool.Free(handles[7]);
        Assert.Equal(1, pool.CanCompact());
        uint[] live = [handles[0], handles[3], handles[4]];

        // The view pins handles[4], the only object of the source zspage; compaction gives up on it rather than wait forever,
        // and a read of any object finishes while the view stays open.
        using (ZsReadView view = pool.MapRead(handles[4], 1020, new byte[4096]))
        {
            var compaction = new Thread(() => pool.Compact());
            compaction.Start();
            var back = new byte[1020];
            foreach (uint h in live)
            {
                pool.Read(h, back);
            }

            Assert.True(compaction.Join(TimeSpan.FromSeconds(30)), "compaction waited for the open view");
            Assert.True(TestPattern.Slice(4, 1020).SequenceEqual(view.Span));
        }

        IReadOnlyList<ZsClassStats> pinned = pool.GetClassStats();
        pool.Compact();
        Assert.Equal(0, pool.CanCompact());
        // With the view closed, compaction finishes what it left: the freed slots are gathered too.
        AssertCompacted(pinned, pool.GetClassStats());
        Assert.Equal(1, pool.TotalPages);
        var check = new byte[1020];
        foreach ((uint h, int seed) in new[] { (handles[0], 0), (handles[3], 3), (handles[4], 4) })
        {
            pool.Read(h, check);
            Assert.True(TestPattern.Slice(seed, 1020).SequenceEqual(check));
        }
    }
}
