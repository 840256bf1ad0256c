namespace ZsAlloc.Tests.Pool;

/// <summary>
/// Compaction gives back the descriptors of the zspages it emptied: live zspages above a mark just over the live count
/// are renumbered to free ids below it and the descriptor table is cut there. Every object must read back after its
/// zspage was renumbered, the metadata figure must fall by exactly what was cut and rise again on reuse, and readers'
/// pins (kept apart from the descriptors, never given back) must stay balanced across a cut.
/// </summary>
public sealed class ZspageShrinkTests
{
    private const int DescriptorBytes = 20;
    private const int Size = 1020;

    [Fact]
    public void Compaction_cuts_the_descriptors_of_emptied_zspages_and_every_object_still_reads()
    {
        const int Count = 60_000;
        using var pool = new ZsPool();
        var rng = new Random(11);
        var live = new Dictionary<int, uint>();
        for (int i = 0; i < Count; i++)
        {
            live[i] = Store(pool, SizeOf(i), i);
        }

        foreach (int seed in live.Keys.Where(_ => rng.Next(2) == 0).ToList())
        {
            pool.Free(live[seed]);
            live.Remove(seed);
        }

        long metadata = pool.MetadataBytes;
        long descriptors = pool.ZspageMetadataBytes;
        long releasedBefore = pool.ZspageBytesReleased;
        pool.Compact();
        long released = pool.ZspageBytesReleased - releasedBefore;

        // Compaction emptied about half the zspages: their descriptors went, less the room left above the live ones
        // (1/128 of them and a page); the figure fell by exactly that (no other metadata changes in a compaction here).
        int zspages = pool.LiveZspages;
        Assert.True(released > descriptors / 3, $"only {released} of {descriptors} bytes of descriptors given back");
        Assert.Equal(descriptors - released, pool.ZspageMetadataBytes);
        Assert.Equal(metadata - released, pool.MetadataBytes);
        Assert.InRange(pool.ZspageMetadataBytes, (long)zspages * DescriptorBytes, (zspages + (zspages / 128) + 205L) * DescriptorBytes);
        CheckAll(pool, live);
        CheckAccounting(pool, live.Count);

        // Frees and compaction find the renumbered zspages: a third more freed at random, compacted again.
        foreach (int seed in live.Keys.Where(_ => rng.Next(3) == 0).ToList())
        {
            pool.Free(live[seed]);
            live.Remove(seed);
        }

        pool.Compact();
        CheckAll(pool, live);
        CheckAccounting(pool, live.Count);

        // Reuse: new zspages take the free ids below the cut, then ids past it again (zeroed descriptor pages).
        long cut = pool.ZspageMetadataBytes;
        for (int i = Count; i < Count + 40_000; i++)
        {
            live[i] = Store(pool, SizeOf(i), i);
        }

        Assert.True(pool.ZspageMetadataBytes > cut, "the descriptor table did not grow again past the cut");
        Assert.Equal((long)pool.LiveZspages * DescriptorBytes, pool.ZspageMetadataBytes); // no free id left unused
        CheckAll(pool, live);
        CheckAccounting(pool, live.Count);
        foreach (uint handle in live.Values)
        {
            pool.Free(handle);
        }

        Assert.Equal(0, pool.GetStats().Objects);
        Assert.Equal(0, pool.TotalPages);
        Assert.Equal(0, pool.LiveZspages);
    }

    [Fact]
    public void A_view_open_while_its_zspage_is_renumbered_keeps_its_object_and_its_pin()
    {
        using var pool = new ZsPool();
        var rng = new Random(5);
        // One class only (1020 + header = 1024: four objects a page, a page a zspage), stored in order: zspage ids follow
        // the order of the objects, so the last object's zspage has one of the highest ids, far above the mark once half
        // the objects are gone and compaction has packed the rest.
        var handles = Enumerable.Range(0, 30_000).Select(i => Store(pool, Size, i)).ToArray();
        int viewed = handles.Length - 1;
        var live = new Dictionary<int, uint>();
        for (int i = 0; i < handles.Length; i++)
        {
            if (i == viewed || rng.Next(2) == 0)
            {
                live[i] = handles[i];
            }
            else
            {
                pool.Free(handles[i]);
            }
        }

        int idBefore = pool.ZspageOf(handles[viewed]);
        var back = new byte[Size];
        using (ZsReadView view = pool.MapRead(handles[viewed], Size, back))
        {
            // Compaction on another thread (the view's own thread must not compact); twice, then the freed slots refilled.
            for (int round = 0; round < 2; round++)
            {
                var compaction = new Thread(() => pool.Compact());
                compaction.Start();
                Assert.True(compaction.Join(TimeSpan.FromSeconds(60)), "compaction hung on the open view");
                Assert.True(TestPattern.Slice(viewed, Size).SequenceEqual(view.Span), "the viewed object moved or was overwritten");
            }

            Assert.True(pool.ZspageBytesReleased > 0, "no descriptors were cut");
            Assert.True(idBefore * (long)DescriptorBytes >= pool.ZspageMetadataBytes, $"zspage {idBefore} was below the cut");
            Assert.NotEqual(idBefore, pool.ZspageOf(handles[viewed]));
            for (int i = 0; i < 10_000; i++)
            {
                live[handles.Length + i] = Store(pool, Size, handles.Length + i);
            }

            Assert.True(TestPattern.Slice(viewed, Size).SequenceEqual(view.Span), "the viewed object moved or was overwritten");
            Assert.Equal(1, pool.PinsHeld);
        }

        // The view's pin was dropped where it was taken: nothing is left pinned, so compaction moves everything again.
        Assert.Equal(0, pool.PinsHeld);
        foreach (int seed in live.Keys.Where(s => s != viewed && rng.Next(2) == 0).ToList())
        {
            pool.Free(live[seed]);
            live.Remove(seed);
        }

        pool.Compact();
        Assert.Equal(0, pool.CanCompact());
        CheckAll(pool, live, _ => Size);
        CheckAccounting(pool, live.Count);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Zspages_are_renumbered_and_cut_while_other_threads_store_read_and_free(int seed)
    {
        const int Workers = 3;
        // Chains of 4 pages: more zspages for the same data, so each bulk free empties enough of them to cut.
        using var pool = new ZsPool(new ZsPoolOptions { ChainLimit = 4, DeferredFreeCapacity = 256 });
        using var stop = new CancellationTokenSource();
        using var abort = new CancellationTokenSource();
        using var phase = new Barrier(Workers);
        Exception? failure = null;
        var survivors = new List<(uint Handle, int Seed)>[Workers];
        long compactions = 0;
        var compactor = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                pool.Compact();
                Interlocked.Increment(ref compactions);
            }
        });
        var workers = new Thread[Workers];
        for (int w = 0; w < Workers; w++)
        {
            int worker = w;
            workers[w] = new Thread(() =>
            {
                try
                {
                    survivors[worker] = Work(pool, new Random((seed * 100) + worker), () => phase.SignalAndWait(abort.Token));
                }
                catch (Exception e)
                {
                    // The first failure is the one reported; the others' waits are cancelled.
                    Interlocked.CompareExchange(ref failure, e, null);
                    abort.Cancel();
                }
            });
        }

        compactor.Start();
        try
        {
            Array.ForEach(workers, t => t.Start());
            Array.ForEach(workers, t => t.Join());
        }
        finally
        {
            // Stopped before the pool is disposed, whatever failed.
            stop.Cancel();
            compactor.Join();
        }

        Assert.Null(failure);
        Assert.True(pool.ZspageBytesReleased > 0, $"no descriptors were cut in {compactions} compactions: the test did not exercise it");
        pool.FlushDeferred();
        var live = survivors.SelectMany(s => s).ToDictionary(s => s.Seed, s => s.Handle);
        CheckAll(pool, live);
        CheckAccounting(pool, live.Count);
        Assert.Equal(0, pool.PinsHeld);
        foreach (uint handle in live.Values)
        {
            pool.Free(handle);
        }

        Assert.Equal(0, pool.TotalPages);
        Assert.Equal(0, pool.LiveZspages);
    }

    /// <summary>
    /// Fills up to 8,000 objects, then frees a random half of them (directly, deferred and in batches), then reads all
    /// the rest three times, and again, with reads, mapped reads and rewrites checked throughout. The workers keep in
    /// step (<paramref name="nextPhase"/>), so the bulk frees leave emptied zspages all over the id range at once, and
    /// the compactor renumbers and cuts them while the reads go on.
    /// </summary>
    private static List<(uint Handle, int Seed)> Work(ZsPool pool, Random rng, Action nextPhase)
    {
        var mine = new List<(uint Handle, int Seed)>();
        var buffer = new byte[ZsPool.MaxObjectSize];
        int next = rng.Next() & 0x0FFF_FFFF;
        for (int round = 0; round < 6; round++)
        {
            while (mine.Count < 8_000)
            {
                int s = next++;
                mine.Add((Store(pool, SizeOf(s), s), s));
                if (rng.Next(4) == 0)
                {
                    ReadOne(pool, mine[rng.Next(mine.Count)], buffer, rng);
                }
            }

            nextPhase();
            for (int i = mine.Count - 1; i >= 0; i--)
            {
                (uint handle, int s) = mine[i];
                int roll = rng.Next(8);
                if (roll < 4)
                {
                    ReadOne(pool, mine[i], buffer, rng);
                    continue;
                }

                if (roll == 4)
                {
                    int rewritten = next++;
                    int size = SizeOf(s);
                    if (SizeOf(rewritten) == size)
                    {
                        pool.Write(handle, TestPattern.Slice(rewritten, size));
                        mine[i] = (handle, rewritten);
                    }

                    continue;
                }

                if (roll == 5)
                {
                    pool.Free(handle);
                }
                else if (roll == 6)
                {
                    pool.FreeDeferred(handle);
                }
                else
                {
                    pool.FreeDeferred([handle], [SizeOf(s)]);
                }

                mine[i] = mine[^1];
                mine.RemoveAt(mine.Count - 1);
            }

            nextPhase();
            for (int pass = 0; pass < 3; pass++)
            {
                foreach ((uint Handle, int Seed) o in mine)
                {
                    ReadOne(pool, o, buffer, rng);
                }
            }

            nextPhase();
        }

        return mine;
    }

    private static void ReadOne(ZsPool pool, (uint Handle, int Seed) o, byte[] buffer, Random rng)
    {
        int size = SizeOf(o.Seed);
        if (rng.Next(2) == 0)
        {
            pool.Read(o.Handle, buffer.AsSpan(0, size));
            Same(TestPattern.Slice(o.Seed, size).SequenceEqual(buffer.AsSpan(0, size)), o.Handle);
        }
        else
        {
            using ZsReadView view = pool.MapRead(o.Handle, size, buffer);
            Same(TestPattern.Slice(o.Seed, size).SequenceEqual(view.Span), o.Handle);
        }
    }

    private static void Same(bool same, uint handle)
    {
        if (!same)
        {
            throw new InvalidOperationException($"handle 0x{handle:x} read back different bytes");
        }
    }

    private static int SizeOf(int seed) => 20 + (int)((uint)(seed * 2654435761u) % 4000);

    private static uint Store(ZsPool pool, int size, int seed)
    {
        uint handle = pool.Malloc(size);
        pool.Write(handle, TestPattern.Slice(seed, size));
        return handle;
    }

    private static void CheckAll(ZsPool pool, Dictionary<int, uint> live, Func<int, int>? sizeOf = null)
    {
        sizeOf ??= SizeOf;
        foreach ((int seed, uint handle) in live)
        {
            int size = sizeOf(seed);
            var buffer = new byte[size];
            pool.Read(handle, buffer);
            Assert.True(buffer.AsSpan().SequenceEqual(TestPattern.Slice(seed, size)), $"handle 0x{handle:x8} (seed {seed}) reads wrong bytes");
        }
    }

    /// <summary>The class counters agree with the live objects and the pages, and every zspage is in a band.</summary>
    private static void CheckAccounting(ZsPool pool, int objects)
    {
        IReadOnlyList<ZsClassStats> classes = pool.GetClassStats();
        Assert.Equal(objects, pool.GetStats().Objects);
        Assert.Equal(objects, classes.Sum(c => c.ObjUsed));
        Assert.Equal(pool.TotalPages, classes.Sum(c => c.PagesResident));
        Assert.Equal(pool.LiveZspages, classes.Sum(c => c.ZspagesByFullness.Sum()));
    }
}
