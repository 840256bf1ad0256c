namespace ZsAlloc.Tests.Pool;

/// <summary>
/// Writers racing to make zspages of the same classes (the re-check in Malloc and its spare), frees that empty them
/// (warm lists and their trims), huge objects that fill arenas (free runs joined), compaction and its shrink, all at
/// once; between rounds everything stops and <see cref="ZsPoolInspector"/> checks the lists, counters and owner map.
/// </summary>
public sealed class PoolInvariantStressTests
{
    [Theory]
    [InlineData(1, 4)]
    [InlineData(2, 16)]
    public void Lists_counters_and_owner_map_agree_between_rounds_of_racing_work(int seed, int chainLimit)
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 128, ChainLimit = chainLimit });
        long peakSeen = 0;
        pool.PeakPagesRaised = () => peakSeen = Math.Max(peakSeen, pool.TotalPages);
        const int Workers = 3;
        var live = new List<(uint Handle, int Size, int Seed)>[Workers];
        for (int w = 0; w < Workers; w++)
        {
            live[w] = [];
        }

        Exception? failure = null;
        int rounds = int.TryParse(Environment.GetEnvironmentVariable("ZS_STRESS_ROUNDS"), out int n) ? n : 24;
        for (int round = 0; round < rounds && failure == null; round++)
        {
            var threads = new List<Thread>();
            for (int w = 0; w < Workers; w++)
            {
                int worker = w;
                int r = round;
                threads.Add(new Thread(() =>
                {
                    try
                    {
                        Work(pool, live[worker], new Random((seed * 1000) + (r * 10) + worker), r);
                    }
                    catch (Exception e)
                    {
                        Interlocked.CompareExchange(ref failure, e, null);
                    }
                }));
            }

            threads.Add(new Thread(() =>
            {
                try
                {
                    for (int i = 0; i < 3; i++)
                    {
                        pool.Compact();
                        pool.ReleaseWarmIfUnused();
                        Thread.Sleep(5);
                    }
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref failure, e, null);
                }
            }));

            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            Assert.Null(failure);
            pool.FlushDeferred();
            ZsPoolInspector.Check(pool);
            var buffer = new byte[4096];
            foreach (var list in live)
            {
                foreach (var (handle, size, s) in list)
                {
                    pool.Read(handle, buffer.AsSpan(0, size));
                    Assert.True(buffer.AsSpan(0, size).SequenceEqual(TestPattern.Slice(s, size)), $"object {handle} changed");
                }
            }

            if (round % 5 == 4)
            {
                pool.Compact();
                ZsPoolInspector.Check(pool);
                Assert.Equal(0, pool.CanCompact());
            }
        }

        Assert.True(pool.PeakPages >= peakSeen);
        foreach (var list in live)
        {
            foreach (var o in list)
            {
                pool.Free(o.Handle);
            }
        }

        pool.FlushDeferred();
        ZsPoolInspector.Check(pool);
        Assert.Equal(0, pool.TotalPages);
    }

    private static void Work(ZsPool pool, List<(uint Handle, int Size, int Seed)> live, Random random, int round)
    {
        // Rounds alternate between a few small classes (racing creation), huge objects and a mix.
        int mode = round % 3;
        int target = mode == 1 ? 6_000 + random.Next(6_000) : 4_000 + random.Next(4_000);
        for (int op = 0; op < 12_000; op++)
        {
            int size = mode switch
            {
                0 => 20 + (random.Next(4) * 160),
                1 => random.Next(10) < 7 ? 3_800 + random.Next(296) : 1 + random.Next(200),
                _ => 1 + random.Next(4096),
            };
            if (live.Count < target && random.Next(100) < 60 || live.Count == 0)
            {
                uint handle = pool.Malloc(size);
                int s = random.Next();
                pool.Write(handle, TestPattern.Slice(s, size));
                live.Add((handle, size, s));
            }
            else
            {
                int i = random.Next(live.Count);
                var o = live[i];
                live[i] = live[^1];
                live.RemoveAt(live.Count - 1);
                int how = random.Next(10);
                if (how < 5)
                {
                    pool.Free(o.Handle);
                }
                else if (how < 8)
                {
                    pool.FreeDeferred(o.Handle);
                }
                else
                {
                    pool.FreeDeferred([o.Handle], [o.Size]);
                }
            }
        }

        // Some rounds end by freeing most of what the worker holds: zspages empty in bulk.
        if (random.Next(3) == 0)
        {
            while (live.Count > 200)
            {
                pool.Free(live[^1].Handle);
                live.RemoveAt(live.Count - 1);
            }
        }
    }
}
