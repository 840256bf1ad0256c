using System.Reflection;
using ZsAlloc.Pages;

namespace ZsAlloc.Tests.Pool;

/// <summary>Review of arena release at the pool: releases racing a compaction in progress, not only after it.</summary>
public sealed class ArenaReleaseReviewPoolTests
{
    /// <summary>
    /// The existing stress compacts and runs the idle tick in one thread, so no arena goes while a compaction moves
    /// objects. Here one thread compacts every few milliseconds while another releases empty arenas (the page source's
    /// own calls, as compaction makes them, and the idle tick), and two workers keep survivors across cycles (so
    /// compaction moves them out of the zspages the frees left sparse), free the rest (directly, deferred, in batches),
    /// read the survivors (copies and held views), prefetch handles freed or moved meanwhile, and every other cycle free
    /// everything together (whole arenas free while compaction runs). Every byte must read back and the pool's invariants
    /// hold. At each moment everything is free the workers wait for a compaction begun after it and then a whole pass of
    /// the racing thread (either may be descheduled for long on a loaded machine), and then at most the newest arena
    /// may still be mapped. How many of
    /// the racing thread's releases landed during a compaction is only reported: that is up to the scheduler.
    /// </summary>
    [Fact]
    public void Arenas_released_while_compaction_moves_objects_lose_no_object()
    {
        using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 4096 });
        var source = (PageSource)typeof(ZsPool).GetField("_pages", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(pool)!;
        using var stop = new CancellationTokenSource();
        Exception? failure = null;
        using var pause = new Barrier(2);
        int released = 0, cycles = 0, compacting = 0, total = 0, most = 0, fewest = int.MaxValue, drops = 0, lastSeen = 0;
        int passes = 0, pauses = 0, mostAtPause = 0, compactionsStarted = 0, compactionsDone = 0;
        void Run(Action body)
        {
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    body();
                }
            }
            catch (OperationCanceledException)
            {
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref failure, e, null);
                stop.Cancel();
            }
        }

        var threads = new List<Thread>
        {
            new(() => Run(() =>
            {
                Interlocked.Increment(ref compactionsStarted);
                Volatile.Write(ref compacting, 1);
                pool.Compact();
                Volatile.Write(ref compacting, 0);
                Interlocked.Increment(ref compactionsDone);
                Thread.Sleep(2);
            })),
            new(() => Run(() =>
            {
                source.ReleaseWarm();
                int during = Volatile.Read(ref compacting);
                int count = source.ReleaseEmptyArenas();
                Interlocked.Add(ref total, count);
                int mapped = pool.ArenasMapped;
                most = Math.Max(most, mapped);
                fewest = Math.Min(fewest, mapped);
                // Compaction's own release may take every all-free arena first (on a loaded machine it often does):
                // a fall in the arenas mapped counts too.
                drops += mapped < lastSeen ? 1 : 0;
                lastSeen = mapped;
                if (during + Volatile.Read(ref compacting) == 2)
                {
                    Interlocked.Add(ref released, count);
                }

                pool.ReleaseWarmIfUnused();
                Interlocked.Increment(ref passes);
                Thread.Yield();
            })),
        };

        for (int w = 0; w < 2; w++)
        {
            int worker = w;
            var random = new Random(900 + worker);
            var survivors = new List<(uint Handle, int Size, int Seed)>();
            var freed = new List<uint>();
            var buffer = new byte[4096];
            int round = 0;
            threads.Add(new Thread(() => Run(() =>
            {
                var fresh = new List<(uint Handle, int Size, int Seed)>();
                long bytes = 0;
                while (bytes < (96L << 20))
                {
                    int size = random.Next(3) == 0 ? random.Next(1, 600) : random.Next(1500, 4097);
                    int seed = random.Next();
                    uint handle = pool.Malloc(size);
                    pool.Write(handle, TestPattern.Slice(seed, size));
                    fresh.Add((handle, size, seed));
                    bytes += size;
                }

                // One in sixteen survives a few cycles; the rest go, three ways.
                var batch = new List<uint>();
                var batchSizes = new List<int>();
                for (int i = 0; i < fresh.Count; i++)
                {
                    (uint handle, int size, _) = fresh[i];
                    if (random.Next(16) == 0)
                    {
                        survivors.Add(fresh[i]);
                        continue;
                    }

                    switch (i % 3)
                    {
                        case 0:
                            pool.Free(handle);
                            break;
                        case 1:
                            pool.FreeDeferred(handle);
                            break;
                        default:
                            batch.Add(handle);
                            batchSizes.Add(size);
                            break;
                    }

                    freed.Add(handle);
                }

                pool.FreeDeferred(batch.ToArray(), batchSizes.ToArray());
                for (int i = survivors.Count - 1; i >= 0; i--)
                {
                    (uint handle, int size, int seed) = survivors[i];
                    pool.Prefetch(freed[random.Next(freed.Count)], 4096);
                    pool.Prefetch(handle, size);
                    bool ok;
                    if (random.Next(2) == 0)
                    {
                        using ZsReadView view = pool.MapRead(handle, size, default);
                        ok = view.Span.SequenceEqual(TestPattern.Slice(seed, size));
                    }
                    else
                    {
                        pool.Read(handle, buffer.AsSpan(0, size));
                        ok = buffer.AsSpan(0, size).SequenceEqual(TestPattern.Slice(seed, size));
                    }

                    if (!ok)
                    {
                        throw new InvalidOperationException($"worker {worker}: a survivor of {size} bytes read wrong bytes");
                    }

                    if (random.Next(3) == 0 || round % 2 == 1)
                    {
                        pool.Free(handle);
                        freed.Add(handle);
                        survivors.RemoveAt(i);
                    }
                }

                if (round++ % 2 == 1)
                {
                    // Both workers hold nothing for a moment (nor the deferred queue): whole arenas are free, while
                    // compaction still runs.
                    pool.FlushDeferred();
                    pause.SignalAndWait(stop.Token);
                    if (worker == 0)
                    {
                        // A compaction that began before everything was freed may still hold zspages it emptied, to
                        // give back together at its end: wait for one that began after (the next one counted), then
                        // for a release pass that began after that (two, so one started after). By then every arena
                        // but the newest is all free and must have gone.
                        int started = Volatile.Read(ref compactionsStarted);
                        while (Volatile.Read(ref compactionsDone) < started + 1)
                        {
                            stop.Token.ThrowIfCancellationRequested();
                            Thread.Sleep(1);
                        }

                        int seen = Volatile.Read(ref passes);
                        while (Volatile.Read(ref passes) < seen + 2)
                        {
                            stop.Token.ThrowIfCancellationRequested();
                            Thread.Sleep(1);
                        }

                        mostAtPause = Math.Max(mostAtPause, pool.ArenasMapped);
                        pauses++;
                    }

                    pause.SignalAndWait(stop.Token);
                }

                if (freed.Count > 100_000)
                {
                    freed.RemoveRange(0, 50_000);
                }

                Interlocked.Increment(ref cycles);
            })));
        }

        threads.Add(StressStop.After(stop, TimeSpan.FromSeconds(5), () => Volatile.Read(ref cycles) >= 4 && Volatile.Read(ref pauses) >= 1 && Volatile.Read(ref most) > 1));
        threads.ForEach(t => t.Start());
        foreach (Thread t in threads)
        {
            Assert.True(t.Join(TimeSpan.FromSeconds(120)), "a thread hung (deadlock?)");
        }

        Assert.Null(failure);
        Assert.True(cycles >= 4, $"{cycles} cycles");
        Console.WriteLine($"{cycles} cycles, {pauses} pauses, {fewest}..{most} arenas mapped ({mostAtPause} at most when all was free), {drops} falls seen, {total} released by the racing thread ({released} during a compaction)");
        Assert.True(pauses >= 1, $"{pauses} pauses");
        Assert.True(most > 1, $"the workers never had more than {most} arena mapped: nothing to release");
        Assert.True(mostAtPause <= 1, $"{mostAtPause} arenas still mapped after a whole release pass with everything free");
        pool.FlushDeferred();
        ZsPoolInspector.Check(pool);
    }
}
