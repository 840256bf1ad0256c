using ZsAlloc.Deferred;

namespace ZsAlloc.Tests.Pool;

/// <summary>
/// The deferred-free queue on its own, with a free callback the test controls (it can hold the drain), so that what the
/// queue takes and when it drains does not depend on the scheduler: a discard's batch may fill the whole capacity, a
/// single free stops at <see cref="DeferredFreeQueue.SingleFreeLimit"/> handles or
/// <see cref="DeferredFreeQueue.SingleFreeBytes"/>, the drain starts at <see cref="DeferredFreeQueue.DrainHighWater"/>
/// handles or <see cref="DeferredFreeQueue.DrainHighWaterBytes"/> however large the capacity, and a batch (a discard's
/// burst) starts none below half the capacity.
/// </summary>
public sealed class DeferredFreeQueueTests
{
    /// <summary>Counts each handle's frees, and can hold the drain inside a free until released.</summary>
    private sealed class Frees(int handles) : IDisposable
    {
        private readonly int[] _counts = new int[handles];
        private int _total;

        public ManualResetEventSlim Gate { get; } = new(true);

        /// <summary>Set once a free has started (the drain is then outside the queue's lock).</summary>
        public ManualResetEventSlim Entered { get; } = new(false);

        public int Total => Volatile.Read(ref _total);

        public void Free(uint handle, bool marked)
        {
            Entered.Set();
            Gate.Wait();
            Interlocked.Increment(ref _counts[handle]);
            Interlocked.Increment(ref _total);
        }

        /// <summary>Asserts that handles [0, count) were each freed exactly once and no other was.</summary>
        public void AssertEachOnce(int count)
        {
            for (int h = 0; h < _counts.Length; h++)
            {
                int expected = h < count ? 1 : 0;
                Assert.True(_counts[h] == expected, $"handle {h} freed {_counts[h]} times, expected {expected}");
            }
        }

        public void Dispose()
        {
            Gate.Dispose();
            Entered.Dispose();
        }
    }

    private static DeferredFreeQueue Create(int capacity, Frees frees) =>
        new(capacity, frees.Free, _ => { }, e => throw new InvalidOperationException("a queued free failed", e));

    private static uint[] Handles(int from, int count) => Enumerable.Range(from, count).Select(i => (uint)i).ToArray();

    [Fact]
    public void A_batch_may_fill_the_capacity_but_a_single_free_stops_at_its_limit()
    {
        const int Capacity = DeferredFreeQueue.SingleFreeLimit + 4000;
        using var frees = new Frees(Capacity + 2);
        var queue = Create(Capacity, frees);
        try
        {
            // Hold the drain (which the batch starts: it passes the high-water mark) inside its first free.
            frees.Gate.Reset();
            const int Batch = DeferredFreeQueue.SingleFreeLimit + 2000;
            int taken = queue.Enqueue(Handles(0, Batch), Enumerable.Repeat(100, Batch).ToArray());
            Assert.Equal(Batch, taken);
            Assert.True(frees.Entered.Wait(TimeSpan.FromSeconds(30)), "no drain started past the high-water mark");

            // At most one drain batch (32) is in hand: the queue still holds more than a single free's limit.
            Assert.True(queue.Depth >= DeferredFreeQueue.SingleFreeLimit, $"depth {queue.Depth}");
            Assert.False(queue.TryEnqueue(Batch, 100), "a single free was queued past SingleFreeLimit");

            // A batch still has room, up to the capacity and no further.
            int more = queue.Enqueue(Handles(Batch, 2), [100, 100]);
            Assert.Equal(2, more);
            Assert.True(queue.Depth <= Capacity);

            frees.Gate.Set();
            queue.Flush();
            Assert.Equal(0, queue.Depth);
            Assert.Equal(0, queue.Bytes);
            frees.AssertEachOnce(Batch + 2);

            // Below the limit a single free is queued again.
            Assert.True(queue.TryEnqueue(Batch + 2, 100));
            Assert.Equal(1, queue.Depth);
        }
        finally
        {
            frees.Gate.Set();
            queue.Close();
        }
    }

    [Fact]
    public void Single_frees_of_whole_pages_start_a_drain_at_the_byte_mark_and_stop_at_the_byte_limit()
    {
        // 4 KiB objects (incompressible data): the byte bounds come long before the handle bounds.
        const int Page = 4096;
        const int AtMark = (int)(DeferredFreeQueue.DrainHighWaterBytes / Page);
        const int AtLimit = (int)(DeferredFreeQueue.SingleFreeBytes / Page);
        Assert.True(AtLimit < DeferredFreeQueue.DrainHighWater);
        using var frees = new Frees(2 * AtLimit);
        var queue = Create(1 << 16, frees);
        try
        {
            frees.Gate.Reset();
            for (int h = 0; h < AtMark; h++)
            {
                Assert.True(queue.TryEnqueue((uint)h, Page), $"single free {h} refused below the byte mark");
            }

            Assert.False(queue.DrainScheduled, "a drain started at the byte mark, not past it");
            Assert.True(queue.TryEnqueue((uint)AtMark, Page));
            Assert.True(queue.DrainScheduled, "no drain started past the byte mark");

            // The drain is now held inside a free with at most one batch (32) in hand, outside the queue's lock.
            Assert.True(frees.Entered.Wait(TimeSpan.FromSeconds(30)), "the drain did not start");
            int queued = AtMark + 1;
            while (queue.TryEnqueue((uint)queued, Page))
            {
                queued++;
                Assert.True(queued < 2 * AtLimit, "single frees were queued far past the byte limit");
            }

            Assert.True(queue.Bytes <= DeferredFreeQueue.SingleFreeBytes, $"{queue.Bytes} bytes queued");
            Assert.InRange(queued, AtLimit, AtLimit + 32);

            frees.Gate.Set();
            queue.Flush();
            Assert.Equal(0, queue.Bytes);
            frees.AssertEachOnce(queued);
        }
        finally
        {
            frees.Gate.Set();
            queue.Close();
        }
    }

    [Fact]
    public void The_drain_starts_at_the_high_water_mark_however_large_the_capacity()
    {
        const int Count = DeferredFreeQueue.DrainHighWater;
        using var frees = new Frees(Count);
        var queue = Create(1 << 20, frees);
        try
        {
            Assert.Equal(Count - 1, queue.Enqueue(Handles(0, Count - 1), Enumerable.Repeat(64, Count - 1).ToArray()));
            Assert.True(queue.TryEnqueue(Count - 1, 64));

            // Nobody flushes: a background drain must free them all (30 s at most on a loaded machine).
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (frees.Total < Count && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(5);
            }

            Assert.Equal(Count, frees.Total);
            Assert.Equal(0, queue.Depth);
            frees.AssertEachOnce(Count);
        }
        finally
        {
            queue.Close();
        }
    }

    [Fact]
    public void A_batch_past_the_high_water_mark_leaves_the_drain_to_the_owner_or_the_next_single_free()
    {
        const int Count = 3 * DeferredFreeQueue.DrainHighWater;
        using var frees = new Frees(Count + 1);
        var queue = Create(1 << 20, frees);
        try
        {
            // Three times the high-water mark, far below half the capacity: no drain during the burst.
            for (int i = 0; i < Count; i += 256)
            {
                Assert.Equal(256, queue.Enqueue(Handles(i, 256), Enumerable.Repeat(64, 256).ToArray()));
            }

            // None queued, running or done (a drain stays scheduled until it has freed what it took).
            Assert.False(queue.DrainScheduled, "a batch below half the capacity started a drain");
            Assert.Equal(0, frees.Total);
            Assert.Equal(Count, queue.Depth);

            // A single free past the mark starts one, which frees everything (30 s at most on a loaded machine), even
            // though the free itself is refused (past SingleFreeLimit: the caller frees it).
            Assert.False(queue.TryEnqueue(Count, 64));
            frees.Free(Count, marked: true);
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (frees.Total < Count + 1 && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(5);
            }

            frees.AssertEachOnce(Count + 1);
            Assert.Equal(0, queue.Depth);
        }
        finally
        {
            queue.Close();
        }
    }

    [Fact]
    public void A_batch_counts_the_pages_its_entries_reach_and_a_release_gives_back_those_past_the_queued_ones()
    {
        // 8192 entries of 8 bytes mapped, none touched; no drain below 4096 batched handles.
        using var frees = new Frees(2500);
        var queue = Create(8192, frees);
        try
        {
            Assert.Equal(0, queue.MetadataBytes);
            Assert.Equal(1000, queue.Enqueue(Handles(0, 1000), Enumerable.Repeat(100, 1000).ToArray()));
            Assert.Equal(2 * 4096, queue.MetadataBytes); // 8,000 bytes of entries
            Assert.Equal(1500, queue.Enqueue(Handles(1000, 1500), Enumerable.Repeat(100, 1500).ToArray()));
            Assert.Equal(5 * 4096, queue.MetadataBytes); // 20,000 bytes
            Assert.Equal(0, queue.ReleaseUnused()); // every counted page holds queued entries

            queue.Flush();
            frees.AssertEachOnce(2500);
            Assert.Equal(5 * 4096, queue.ReleaseUnused());
            Assert.Equal(0, queue.MetadataBytes);

            // Counted again when a batch reaches them again.
            Assert.Equal(600, queue.Enqueue(Handles(0, 600), Enumerable.Repeat(100, 600).ToArray()));
            Assert.Equal(2 * 4096, queue.MetadataBytes);
        }
        finally
        {
            queue.Close();
        }
    }

    [Fact]
    public void Batches_and_single_frees_racing_the_drain_flushes_and_releases_lose_no_handle_and_free_none_twice()
    {
        // Small capacity and limits hit often: batches cut short, single frees refused, the drain and flushes running.
        const int Threads = 4, PerThread = 50_000;
        using var frees = new Frees(Threads * PerThread);
        var queue = Create(DeferredFreeQueue.SingleFreeLimit + 1000, frees);
        try
        {
            Parallel.For(0, Threads, new ParallelOptions { MaxDegreeOfParallelism = Threads }, t =>
            {
                var random = new Random(t);
                int next = t * PerThread, end = next + PerThread;
                while (next < end)
                {
                    if (random.Next(4) == 0)
                    {
                        // A single free: what the queue refuses, the caller frees itself.
                        if (!queue.TryEnqueue((uint)next, 200))
                        {
                            frees.Free((uint)next, marked: true);
                        }

                        next++;
                    }
                    else
                    {
                        int n = Math.Min(end - next, 1 + random.Next(3000));
                        int taken = queue.Enqueue(Handles(next, n), Enumerable.Repeat(200, n).ToArray());
                        Assert.InRange(taken, 0, n);
                        for (int i = next + taken; i < next + n; i++)
                        {
                            frees.Free((uint)i, marked: false);
                        }

                        next += n;
                    }

                    if (random.Next(200) == 0)
                    {
                        queue.Flush();
                    }
                    else if (random.Next(200) == 0)
                    {
                        // The idle tick or compaction, while batches count and fault in pages outside the lock.
                        queue.ReleaseUnused();
                    }
                }
            });

            queue.Flush();
            Assert.Equal(0, queue.Depth);
            Assert.Equal(0, queue.Bytes);
            frees.AssertEachOnce(Threads * PerThread);
            Assert.True(queue.MetadataBytes > 0, "the queued entries' pages were never counted");
            queue.ReleaseUnused();
            Assert.Equal(0, queue.MetadataBytes);
        }
        finally
        {
            queue.Close();
        }
    }

    [Fact]
    public void A_growth_check_that_throws_leaves_the_queue_unlocked()
    {
        using var frees = new Frees(8);
        var queue = Create(4096, frees);
        bool finished = false;
        try
        {
            // The first entry is on a page not counted yet, so the single free asks GrowthAllowed, under the lock.
            queue.GrowthAllowed = _ => throw new InvalidOperationException("growth check failed");
            Assert.Throws<InvalidOperationException>(() => queue.TryEnqueue(1, 100));
            queue.GrowthAllowed = null;

            // Another thread: the queue's lock is reentrant, so only another thread sees it still held. A background
            // thread, so that one stuck on the lock cannot keep the test run from ending.
            bool queued = false;
            var other = new Thread(() =>
            {
                queued = queue.TryEnqueue(2, 100);
                queue.Flush();
            }) { IsBackground = true };
            other.Start();
            finished = other.Join(TimeSpan.FromSeconds(60));
            Assert.True(finished, "the lock stayed held: another thread's Flush waited for it");
            Assert.True(queued, "a free on another thread was refused (the lock stayed held)");
            Assert.Equal(0, queue.Depth);
        }
        finally
        {
            // Close flushes, under the same lock: with it still held, closing would hang the run instead of failing.
            if (finished)
            {
                queue.Close();
            }
        }
    }
}
