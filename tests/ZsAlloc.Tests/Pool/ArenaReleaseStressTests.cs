namespace ZsAlloc.Tests.Pool;

/// <summary>
/// Arenas released while the pool works: two writers each fill about 80 MiB (more than an arena), check it and free it
/// all (directly, deferred one by one and in batches, so the deferred queue's prefetch reads locations that compaction
/// may move and whose arenas may go), while another thread compacts and runs the idle tick without pause. Every byte
/// must read back, arenas must actually be released and their indices reused, and the accounting must end at zero.
/// </summary>
public sealed class ArenaReleaseStressTests
{
    [Fact]
    public void Arenas_released_under_fills_frees_deferred_frees_and_compaction_lose_no_object()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 4096 });
        using var stop = new CancellationTokenSource();
        Exception? failure = null;
        int fewest = int.MaxValue, most = 0, cycles = 0;
        var threads = new List<Thread>
        {
            new(() =>
            {
                try
                {
                    while (!stop.IsCancellationRequested)
                    {
                        pool.Compact();
                        pool.ReleaseWarmIfUnused();
                        int arenas = pool.ArenasMapped;
                        most = Math.Max(most, arenas);
                        if (most > 1)
                        {
                            fewest = Math.Min(fewest, arenas);
                        }
                    }
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref failure, e, null);
                }
            }),
        };

        for (int w = 0; w < 2; w++)
        {
            int worker = w;
            threads.Add(new Thread(() =>
            {
                var random = new Random(500 + worker);
                var handles = new List<uint>();
                var sizes = new List<int>();
                var seeds = new List<int>();
                var buffer = new byte[4096];
                try
                {
                    while (!stop.IsCancellationRequested)
                    {
                        long bytes = 0;
                        while (bytes < (80L << 20))
                        {
                            int size = random.Next(3) == 0 ? random.Next(1, 600) : random.Next(2500, 4097);
                            int seed = random.Next();
                            uint handle = pool.Malloc(size);
                            pool.Write(handle, TestPattern.Slice(seed, size));
                            handles.Add(handle);
                            sizes.Add(size);
                            seeds.Add(seed);
                            bytes += size;
                        }

                        var batch = new List<uint>();
                        var batchSizes = new List<int>();
                        for (int i = 0; i < handles.Count; i++)
                        {
                            pool.Read(handles[i], buffer.AsSpan(0, sizes[i]));
                            if (!buffer.AsSpan(0, sizes[i]).SequenceEqual(TestPattern.Slice(seeds[i], sizes[i])))
                            {
                                throw new InvalidOperationException($"worker {worker}: object {i} of {handles.Count} read wrong bytes");
                            }

                            switch (i % 3)
                            {
                                case 0:
                                    pool.Free(handles[i]);
                                    break;
                                case 1:
                                    pool.FreeDeferred(handles[i]);
                                    break;
                                default:
                                    batch.Add(handles[i]);
                                    batchSizes.Add(sizes[i]);
                                    if (batch.Count == 64)
                                    {
                                        pool.FreeDeferred(batch.ToArray(), batchSizes.ToArray());
                                        batch.Clear();
                                        batchSizes.Clear();
                                    }

                                    break;
                            }
                        }

                        pool.FreeDeferred(batch.ToArray(), batchSizes.ToArray());
                        handles.Clear();
                        sizes.Clear();
                        seeds.Clear();
                        Interlocked.Increment(ref cycles);
                    }
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref failure, e, null);
                }
            }));
        }

        // 5 s, and on a loaded machine until two cycles have run and an arena has gone (a fixed 5 s did not always suffice).
        threads.Add(StressStop.After(stop, TimeSpan.FromSeconds(5), () => Volatile.Read(ref cycles) >= 2 && Volatile.Read(ref most) >= 2 && Volatile.Read(ref fewest) < Volatile.Read(ref most)));
        threads.ForEach(t => t.Start());
        foreach (Thread t in threads)
        {
            Assert.True(t.Join(TimeSpan.FromSeconds(120)), "a thread hung (deadlock?)");
        }

        Assert.Null(failure);
        Assert.True(cycles >= 2, $"{cycles} fill-and-free cycles, arenas {most} to {fewest}");
        Assert.True(most >= 2 && fewest < most, $"arenas mapped went from {most} to no fewer than {fewest}: none was released");

        pool.FlushDeferred();
        ZsPoolInspector.Check(pool);
        pool.Compact();
        ZsPoolInspector.Check(pool);
        Assert.Equal(0, pool.TotalPages);
        Assert.Equal(0, pool.LiveZspages);
        Assert.Equal(0, pool.GetStats().Objects);
        Assert.Equal(0, pool.PinsHeld);
        Assert.Equal(1, pool.ArenasMapped);
    }
}
