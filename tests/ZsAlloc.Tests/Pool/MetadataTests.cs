namespace ZsAlloc.Tests.Pool;

/// <summary>
/// The pool's metadata figure counts what is resident and falls when metadata goes back: the deferred queue's pages
/// past its queued entries, and the handle cells that freed objects left (<see cref="ZsPool.ShrinkHandles"/>).
/// Every surviving object must read back unchanged after its handle moved and after the cells were reused.
/// </summary>
public sealed class MetadataTests
{
    private const int Page = 4096;

    [Fact]
    public void The_deferred_queue_counts_the_pages_its_entries_touched_and_gives_them_back()
    {
        // 8192 entries of 8 bytes: 16 pages mapped, none touched; the worker drains at 4096, so 1500 stay queued.
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 8192 });
        var handles = Enumerable.Range(0, 3000).Select(i => Store(pool, 100 + (i % 50), i)).ToArray();
        long filled = pool.MetadataBytes;

        for (int i = 0; i < 1500; i++)
        {
            pool.FreeDeferred(handles[i]);
        }

        Assert.Equal(1500, pool.GetStats().DeferredQueueDepth);
        Assert.Equal(filled + (3 * Page), pool.MetadataBytes); // 12,000 bytes of entries: 3 pages

        // Drained, the pages are still resident (and counted) until compaction or the idle tick gives them back.
        pool.FlushDeferred();
        Assert.Equal(filled + (3 * Page), pool.MetadataBytes);
        pool.Compact();
        Assert.Equal(filled, pool.MetadataBytes);

        // Used again after the release: entries land on fresh zero pages and are counted again.
        for (int i = 1500; i < 2200; i++)
        {
            pool.FreeDeferred(handles[i]);
        }

        Assert.Equal(filled + (2 * Page), pool.MetadataBytes);
        Assert.Equal(700, pool.GetStats().DeferredQueueDepth);
        pool.FlushDeferred();
        Assert.Equal(800, pool.GetStats().Objects);
        pool.ReleaseWarmIfUnused(); // drained: the idle tick gives the queue's pages back too
        Assert.Equal(filled, pool.MetadataBytes);
        for (int i = 2200; i < 3000; i++)
        {
            Check(pool, handles[i], 100 + (i % 50), i);
        }
    }

    [Fact]
    public void The_deferred_queue_counts_a_new_page_of_entries_only_with_its_owners_leave()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 8192 });
        var handles = Enumerable.Range(0, 1600).Select(i => Store(pool, 100 + (i % 50), i)).ToArray();
        long filled = pool.MetadataBytes;
        var asked = new List<long>();
        bool allow = false;
        pool.DeferredGrowthAllowed = bytes =>
        {
            asked.Add(bytes);
            return allow;
        };

        // Refused: a single free and a batch are both freed now, and nothing more is counted.
        pool.FreeDeferred(handles[0]);
        pool.FreeDeferred(handles[1..3], [100 + 1, 100 + 2]);
        Assert.Equal(0, pool.GetStats().DeferredQueueDepth);
        Assert.Equal(1597, pool.GetStats().Objects);
        Assert.Equal(filled, pool.MetadataBytes);
        Assert.Equal([Page, Page], asked);

        // Allowed: the first free counts a page (asked once), the next 511 fit in it without asking.
        allow = true;
        for (int i = 3; i < 515; i++)
        {
            pool.FreeDeferred(handles[i]);
        }

        Assert.Equal(512, pool.GetStats().DeferredQueueDepth);
        Assert.Equal(filled + Page, pool.MetadataBytes);
        Assert.Equal([Page, Page, Page], asked);

        // Refused again at the page's end: a batch (queued 256 handles per lock hold, each asking for the page it
        // would add) is cut where the counted entries end, none left here, and freed now.
        allow = false;
        pool.FreeDeferred(handles[515..1115], handles[515..1115].Select((_, j) => 100 + ((515 + j) % 50)).ToArray());
        Assert.Equal(512, pool.GetStats().DeferredQueueDepth);
        Assert.Equal(filled + Page, pool.MetadataBytes);
        Assert.Equal([Page, Page, Page, Page, Page, Page], asked);
        Assert.Equal(1600 - 3 - 600, pool.GetStats().Objects);

        pool.FlushDeferred();
        Assert.Equal(1600 - 1115, pool.GetStats().Objects);
        for (int i = 1115; i < 1600; i++)
        {
            Check(pool, handles[i], 100 + (i % 50), i);
        }
    }

    [Fact]
    public void A_pool_without_a_deferred_queue_counts_none()
    {
        using var with = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 32768 });
        using var without = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 0 });
        Assert.Equal(without.MetadataBytes, with.MetadataBytes); // mapped, never touched: not resident, not counted
        uint handle = without.Malloc(10);
        without.FreeDeferred(handle); // synchronous
        Assert.Equal(0, without.GetStats().Objects);
    }

    [Fact]
    public void Shrinking_the_handles_gives_back_the_cells_freed_objects_left_and_every_object_still_reads()
    {
        const int Count = 60_000;
        using var pool = new ZsPool();
        var rng = new Random(7);
        var live = new Dictionary<int, uint>(); // seed -> handle; size from the seed
        for (int i = 0; i < Count; i++)
        {
            live[i] = i % 10 == 0 ? pool.StoreWord(Word(i)) : Store(pool, SizeOf(i), i);
        }

        // Half freed at random: the free cells are spread over every page of the table.
        foreach (int seed in live.Keys.Where(_ => rng.Next(2) == 0).ToList())
        {
            Free(pool, seed, live[seed]);
            live.Remove(seed);
        }

        pool.Compact();
        long before = pool.MetadataBytes;
        int moved = 0;
        long released = pool.ShrinkHandles(() =>
        {
            foreach (int seed in live.Keys.ToList())
            {
                uint handle = live[seed];
                if (pool.HandleAboveMark(handle))
                {
                    live[seed] = seed % 10 == 0 ? pool.MoveWordHandle(handle) : pool.MoveObjectHandle(handle);
                    moved++;
                }
            }
        });

        // Cells of the freed half, less the room left above the live ones (at most 1/128 of them and two pages).
        long freedCells = Count - live.Count;
        Assert.InRange(released, (freedCells - (live.Count / 128) - 1024) * 8, freedCells * 8 + Page);
        Assert.Equal(before - released, pool.MetadataBytes);
        Assert.True(moved > live.Count / 4, $"only {moved} of {live.Count} handles moved");
        Assert.Equal(live.Keys.Count(seed => seed % 10 != 0), pool.GetStats().Objects); // words are not objects
        CheckAll(pool, live, words: true);

        // Objects moved by compaction after their handles moved still read back.
        foreach (int seed in live.Keys.Where(_ => rng.Next(3) == 0).ToList())
        {
            Free(pool, seed, live[seed]);
            live.Remove(seed);
        }

        pool.Compact();
        CheckAll(pool, live, words: true);

        // Reuse: new handles take the free cells below the cut, then the cells past it again (fresh zero pages).
        long shrunk = pool.MetadataBytes;
        for (int i = Count; i < Count + 40_000; i++)
        {
            live[i] = i % 10 == 0 ? pool.StoreWord(Word(i)) : Store(pool, SizeOf(i), i);
        }

        Assert.True(pool.MetadataBytes > shrunk, "the table did not grow again past the cut");
        Assert.Equal(live.Count, live.Values.Distinct().Count());
        CheckAll(pool, live, words: true);
        foreach ((int seed, uint handle) in live)
        {
            Free(pool, seed, handle);
        }

        Assert.Equal(0, pool.GetStats().Objects);
        Assert.Equal(0, pool.TotalPages);
    }

    [Fact]
    public void A_handle_left_above_the_mark_keeps_the_table_whole_and_the_stack_usable()
    {
        using var pool = new ZsPool();
        var handles = Enumerable.Range(0, 40_000).Select(i => Store(pool, SizeOf(i), i)).ToArray();
        for (int i = 0; i < 30_000; i++)
        {
            pool.Free(handles[i]);
        }

        // The owner moves nothing: the last 10,000 handles stay above the mark, so nothing is cut.
        long before = pool.MetadataBytes;
        Assert.Equal(0, pool.ShrinkHandles(() => { }));
        Assert.Equal(before, pool.MetadataBytes);
        Assert.False(pool.HandleAboveMark(handles[^1]));

        // The free cells above the mark went back to the stack: 30,000 stores need no new cell.
        var again = Enumerable.Range(0, 30_000).Select(i => Store(pool, SizeOf(i), -i)).ToArray();
        Assert.Equal(before, pool.MetadataBytes);
        Assert.Equal(40_000, again.Concat(handles[30_000..]).Distinct().Count());
        for (int i = 0; i < again.Length; i++)
        {
            Check(pool, again[i], SizeOf(i), -i);
        }

        for (int i = 30_000; i < handles.Length; i++)
        {
            Check(pool, handles[i], SizeOf(i), i);
        }

        // Too few cells free to be worth it: no shrink starts.
        Assert.Equal(0, pool.ShrinkHandles(() => throw new InvalidOperationException("no shrink should run")));
    }

    [Fact]
    public void Handles_shrink_while_other_threads_store_free_and_compact()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 256 });
        var owned = new Dictionary<int, uint>();
        for (int i = 0; i < 80_000; i++)
        {
            owned[i] = Store(pool, SizeOf(i), i);
        }

        var rng = new Random(3);
        foreach (int seed in owned.Keys.Where(_ => rng.Next(2) == 0).ToList())
        {
            pool.Free(owned[seed]);
            owned.Remove(seed);
        }

        using var stop = new CancellationTokenSource();
        Exception? failure = null;
        var threads = new List<Thread>();
        for (int w = 0; w < 2; w++)
        {
            int worker = w;
            threads.Add(new Thread(() =>
            {
                try
                {
                    Churn(pool, new Random(100 + worker), stop.Token);
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref failure, e, null);
                }
            }));
        }

        threads.Add(new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                pool.Compact();
            }
        }));
        threads.ForEach(t => t.Start());
        try
        {
            ShrinkRounds();
        }
        finally
        {
            // Stopped before the pool is disposed, whatever failed.
            stop.Cancel();
            threads.ForEach(t => t.Join());
        }

        Assert.Null(failure);
        CheckAll(pool, owned, words: false);
        pool.FlushDeferred();
        Assert.Equal(owned.Count, pool.GetStats().Objects);
        foreach (uint handle in owned.Values)
        {
            pool.Free(handle);
        }

        Assert.Equal(0, pool.TotalPages);

        void ShrinkRounds()
        {
            for (int round = 0; round < 6 && failure == null; round++)
            {
                pool.ShrinkHandles(() =>
                {
                    foreach (int seed in owned.Keys.ToList())
                    {
                        if (pool.HandleAboveMark(owned[seed]))
                        {
                            owned[seed] = pool.MoveObjectHandle(owned[seed]);
                        }
                    }
                });
                CheckAll(pool, owned, words: false);

                // Free some more of the owned objects so the next round has cells to give back.
                foreach (int seed in owned.Keys.Where(_ => rng.Next(4) == 0).ToList())
                {
                    pool.FreeDeferred(owned[seed]);
                    owned.Remove(seed);
                }
            }
        }
    }

    [Fact]
    public async Task A_handle_move_that_finds_no_cell_leaves_the_object_readable_and_freeable()
    {
        // A table of 40,000 cells, all taken, then half freed at random: a shrink has room to move handles below its
        // mark until writes made meanwhile take that room and the table's last cell.
        const int Cells = 40_000;
        // Disposed only at the end: after a timeout, a reader still spinning on the pool would fault on unmapped pages.
        var pool = new ZsPool(new ZsPoolOptions { MaxHandleCells = Cells });
        var rng = new Random(11);
        var live = new Dictionary<int, uint>();
        for (int i = 0; i < Cells; i++)
        {
            live[i] = Store(pool, SizeOf(i), i);
        }

        Assert.Throws<OutOfMemoryException>(() => pool.Malloc(100));
        foreach (int seed in live.Keys.Where(_ => rng.Next(2) == 0).ToList())
        {
            pool.Free(live[seed]);
            live.Remove(seed);
        }

        int refused = 0;
        int stranded = -1;
        pool.ShrinkHandles(() =>
        {
            int next = Cells;
            while (true)
            {
                try
                {
                    live[next] = Store(pool, SizeOf(next), next);
                    next++;
                }
                catch (OutOfMemoryException)
                {
                    break;
                }
            }

            foreach (int seed in live.Keys.ToList())
            {
                if (pool.HandleAboveMark(live[seed]))
                {
                    Assert.Throws<OutOfMemoryException>(() => pool.MoveObjectHandle(live[seed]));
                    refused++;
                    stranded = seed;
                }
            }
        });

        Assert.True(refused > 0, "no handle was left above the mark");

        // The object whose move failed keeps its handle: it reads (a cell left marked Moving would spin its reader
        // forever), compaction can move it, and it can be freed.
        // WaitAsync throws TimeoutException for a call that does not return.
        var limit = TimeSpan.FromSeconds(60);
        await Task.Run(() => Check(pool, live[stranded], SizeOf(stranded), stranded)).WaitAsync(limit);
        foreach (int seed in live.Keys.Where(_ => rng.Next(2) == 0).ToList())
        {
            pool.Free(live[seed]);
            live.Remove(seed);
        }

        await Task.Run(pool.Compact).WaitAsync(limit);
        CheckAll(pool, live, words: false);
        await Task.Run(() =>
        {
            foreach (uint handle in live.Values)
            {
                pool.Free(handle);
            }
        }).WaitAsync(limit);
        Assert.Equal(0, pool.GetStats().Objects);
        pool.Dispose();
    }

    /// <summary>Stores, verifies and frees objects of its own (a window of up to 2,000) until stopped.</summary>
    private static void Churn(ZsPool pool, Random rng, CancellationToken stop)
    {
        var mine = new List<(uint Handle, int Seed)>();
        int next = rng.Next();
        while (!stop.IsCancellationRequested)
        {
            if (mine.Count < 2000 && (mine.Count == 0 || rng.Next(2) == 0))
            {
                int seed = next++ & 0x3FFF_FFFF;
                mine.Add((Store(pool, SizeOf(seed), seed), seed));
            }
            else
            {
                int at = rng.Next(mine.Count);
                (uint handle, int seed) = mine[at];
                Check(pool, handle, SizeOf(seed), seed);
                mine[at] = mine[^1];
                mine.RemoveAt(mine.Count - 1);
                if (rng.Next(2) == 0)
                {
                    pool.Free(handle);
                }
                else
                {
                    pool.FreeDeferred(handle);
                }
            }
        }

        foreach ((uint handle, int seed) in mine)
        {
            Check(pool, handle, SizeOf(seed), seed);
            pool.Free(handle);
        }
    }

    private static int SizeOf(int seed) => 20 + (int)((uint)(seed * 2654435761u) % 4000);

    private static ulong Word(int seed) => 0x0101_0101_0101_0101UL * (ulong)(seed & 0xFF) ^ (ulong)seed;

    private static uint Store(ZsPool pool, int size, int seed)
    {
        uint handle = pool.Malloc(size);
        pool.Write(handle, TestPattern.Slice(seed, size));
        return handle;
    }

    private static void Free(ZsPool pool, int seed, uint handle)
    {
        if (seed % 10 == 0)
        {
            pool.FreeWord(handle);
        }
        else
        {
            pool.Free(handle);
        }
    }

    private static void Check(ZsPool pool, uint handle, int size, int seed)
    {
        var buffer = new byte[size];
        pool.Read(handle, buffer);
        Assert.True(buffer.AsSpan().SequenceEqual(TestPattern.Slice(seed, size)), $"handle 0x{handle:x8} (seed {seed}) reads wrong bytes");
    }

    /// <param name="words">Seeds divisible by 10 are words (<see cref="ZsPool.StoreWord"/>), not objects.</param>
    private static void CheckAll(ZsPool pool, Dictionary<int, uint> live, bool words)
    {
        foreach ((int seed, uint handle) in live)
        {
            if (words && seed % 10 == 0)
            {
                Assert.Equal(Word(seed), pool.ReadWord(handle));
            }
            else
            {
                Check(pool, handle, SizeOf(seed), seed);
            }
        }
    }
}
