namespace ZsAlloc.Tests.Pool;

/// <summary>
/// Several threads allocate, write, verify and free (directly and deferred) while another thread compacts in a
/// loop, so objects move under readers and writers. No read may ever differ from what its owner wrote, and the
/// pool's accounting must match the surviving handles exactly at the end.
/// </summary>
public sealed class ZsPoolConcurrencyTests
{
    private const int Workers = 4;
    private const int OperationsPerWorker = 400_000;

    [Fact]
    public void Workers_and_a_compacting_thread_never_see_a_wrong_byte()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 512 });
        var survivors = new List<(uint Handle, int Size, int Seed)>[Workers];
        using var stop = new CancellationTokenSource();
        long compactions = 0;
        var compactor = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                pool.Compact();
                Interlocked.Increment(ref compactions);
            }
        });
        compactor.Start();

        Exception? failure = null;
        var workers = new Thread[Workers];
        for (int w = 0; w < Workers; w++)
        {
            int worker = w;
            workers[w] = new Thread(() =>
            {
                try
                {
                    survivors[worker] = Work(pool, new Random(1000 + worker));
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref failure, e, null);
                }
            });
            workers[w].Start();
        }

        foreach (Thread t in workers)
        {
            t.Join();
        }

        stop.Cancel();
        compactor.Join();
        Assert.Null(failure);
        Assert.True(compactions > 0);

        pool.FlushDeferred();
        var live = survivors.SelectMany(s => s).ToList();
        var buffer = new byte[ZsPool.MaxObjectSize];
        foreach ((uint handle, int size, int seed) in live)
        {
            pool.Read(handle, buffer.AsSpan(0, size));
            Assert.True(TestPattern.Slice(seed, size).SequenceEqual(buffer.AsSpan(0, size)));
        }

        ZsPoolStats stats = pool.GetStats();
        IReadOnlyList<ZsClassStats> classes = pool.GetClassStats();
        Assert.True(stats.ObjectsMoved > 0, "compaction never moved an object: the test did not exercise it");
        Assert.Equal(live.Count, stats.Objects);
        Assert.Equal(live.Count, classes.Sum(c => c.ObjUsed));
        Assert.Equal(live.Sum(s => (long)s.Size), stats.BytesStored);
        Assert.Equal(pool.TotalPages, classes.Sum(c => c.PagesResident));

        foreach ((uint handle, _, _) in live)
        {
            pool.Free(handle);
        }

        Assert.Equal(0, pool.TotalPages);
        Assert.Equal(0, pool.GetStats().Objects);
    }

    private static List<(uint Handle, int Size, int Seed)> Work(ZsPool pool, Random random)
    {
        var mine = new List<(uint Handle, int Size, int Seed)>();
        var buffer = new byte[ZsPool.MaxObjectSize];
        for (int op = 0; op < OperationsPerWorker; op++)
        {
            int roll = random.Next(100);
            if (mine.Count < 500 || (roll < 40 && mine.Count < 4000))
            {
                int size = random.Next(10) < 8 ? random.Next(100, 3000) : random.Next(1, ZsPool.MaxObjectSize + 1);
                int seed = random.Next();
                uint handle = pool.Malloc(size);
                pool.Write(handle, TestPattern.Slice(seed, size));
                mine.Add((handle, size, seed));
                continue;
            }

            int index = random.Next(mine.Count);
            (uint h, int s, int sd) = mine[index];
            if (roll < 60)
            {
                pool.Read(h, buffer.AsSpan(0, s));
                Check(TestPattern.Slice(sd, s).SequenceEqual(buffer.AsSpan(0, s)), h);
            }
            else if (roll < 70)
            {
                using ZsReadView view = pool.MapRead(h, s, buffer);
                Check(TestPattern.Slice(sd, s).SequenceEqual(view.Span), h);
            }
            else if (roll < 78)
            {
                int seed = random.Next();
                pool.Write(h, TestPattern.Slice(seed, s));
                mine[index] = (h, s, seed);
            }
            else if (roll < 96)
            {
                if (roll < 88)
                {
                    pool.Free(h);
                }
                else
                {
                    pool.FreeDeferred(h);
                }

                mine[index] = mine[^1];
                mine.RemoveAt(mine.Count - 1);
            }
            else
            {
                // A discarded range: the newest objects as one batch (the queue's 512 often cannot take them all).
                int count = Math.Min(mine.Count, random.Next(1, 100));
                var handles = new uint[count];
                var sizes = new int[count];
                for (int i = 0; i < count; i++)
                {
                    (handles[i], sizes[i], _) = mine[mine.Count - 1 - i];
                }

                mine.RemoveRange(mine.Count - count, count);
                pool.FreeDeferred(handles, sizes);
            }
        }

        return mine;
    }

    private static void Check(bool same, uint handle)
    {
        if (!same)
        {
            throw new InvalidOperationException($"handle 0x{handle:x} read back different bytes");
        }
    }
}
