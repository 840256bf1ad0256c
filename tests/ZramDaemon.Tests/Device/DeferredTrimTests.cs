using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>
/// Discarded ranges with the deferred-free queue: a range's objects go to the queue as one batch, the rest (queue full,
/// byte budget reached) is freed at once, and nothing is lost or freed twice, whatever runs at the same time.
/// </summary>
public class DeferredTrimTests
{
    private const int Page = ZramDevice.PageSize;

    private static ZramDevice Create(int slots, int? queue, bool dedup = false, long memLimit = 0)
        => new(new ZramDeviceOptions
        {
            Name = "trim",
            DiskSize = (long)slots * Page,
            DeferredFreeCapacity = queue,
            Dedup = dedup,
            MemLimit = memLimit,
            // The background thread flushes the queue every interval: keep it out of the way, the test flushes.
            CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance);

    /// <summary>A page of text that is different for every (block, version).</summary>
    private static byte[] PageOf(int block, int version)
    {
        byte[] page = (byte[])DevicePages.TextPage(block + (version * 7)).Clone();
        BitConverter.TryWriteBytes(page.AsSpan(0, 8), ((long)version << 32) | (uint)block);
        return page;
    }

    private static bool IsPageOf(ReadOnlySpan<byte> page, int block, out int version)
    {
        long tag = BitConverter.ToInt64(page[..8]);
        version = (int)(tag >> 32);
        return (uint)tag == (uint)block && version >= 0 && page.SequenceEqual(PageOf(block, version));
    }

    [Theory]
    [InlineData(4096L * Page, 4096)]       // one entry per block: a whole-device discard fits
    [InlineData(128L << 30, 1 << 24)]      // 128 GiB: at most 16 Mi entries (128 MiB of address space, touched as used)
    public void The_default_queue_holds_one_entry_per_block_up_to_its_maximum(long diskSize, int expected)
    {
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "auto", DiskSize = diskSize }, NullLoggerFactory.Instance);
        Assert.Equal(expected, device.GetPoolStats().DeferredQueueCapacity);
        Assert.Equal(0, device.GetStats().DeferredFreeDepth);
    }

    [Fact]
    public void A_whole_device_discard_with_the_default_queue_loses_nothing_and_frees_everything_on_flush()
    {
        const int Slots = 40_000; // more than a single free may queue (32,768): only a batch goes past it
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "auto",
            DiskSize = (long)Slots * Page,
            CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance);
        byte[] page = new byte[Page];
        for (int i = 0; i < Slots; i++)
        {
            page.AsSpan().Fill(0);
            BitConverter.TryWriteBytes(page.AsSpan(i % 4000), i);
            Assert.Equal(NbdError.None, device.Write((long)i * Page, page, fua: false));
        }

        Assert.Equal(NbdError.None, device.Trim(0, (long)Slots * Page));
        ZramStats stats = device.GetStats();
        Assert.Equal(0, stats.OrigDataSize);
        Assert.Equal(Slots, stats.DiscardedPages);
        device.FlushDeferredFrees();
        Assert.Equal(0, device.GetStats().DeferredFreeDepth);
        Assert.Equal(0, device.GetPoolStats().Objects);
        Assert.Equal(0, device.GetPoolStats().DeferredQueueBytes);
        Assert.True(device.Read(12345L * Page, page) == NbdError.None && page.AsSpan().IndexOfAnyExcept((byte)0) < 0);
    }

    [Theory]
    [InlineData(16)]     // the queue takes 16 handles of the 128, the rest are freed during the trim
    [InlineData(32768)]  // the queue takes them all
    [InlineData(0)]      // no queue: every free synchronous
    public void A_range_trim_frees_what_the_queue_cannot_take_at_once_and_loses_nothing(int queue)
    {
        using ZramDevice device = Create(256, queue);
        using ZramDevice reference = Create(256, 0);
        for (int i = 0; i < 256; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, PageOf(i, 0), fua: false));
            if (i < 64 || i >= 192)
            {
                Assert.Equal(NbdError.None, reference.Write((long)i * Page, PageOf(i, 0), fua: false));
            }
        }

        Assert.Equal(NbdError.None, device.Trim(64L * Page, 128L * Page));
        ZramStats stats = device.GetStats();
        Assert.True(stats.DeferredFreeDepth <= Math.Min(queue, 128), $"{stats.DeferredFreeDepth} queued with a queue of {queue}");
        // At most what the queue can hold is still in the pool (a worker may be freeing some right now).
        Assert.True(device.GetPoolStats().Objects <= 128 + Math.Min(queue, 128),
            $"{device.GetPoolStats().Objects} objects: the handles the queue did not take were not freed");
        // The device's counters change at once, queued or not.
        Assert.Equal(128L * Page, stats.OrigDataSize);
        Assert.Equal(reference.GetStats().ComprDataSize, stats.ComprDataSize);
        Assert.Equal(128, stats.DiscardedPages);
        Assert.Equal(128, stats.NotifyFree);

        device.FlushDeferredFrees();
        Assert.Equal(0, device.GetStats().DeferredFreeDepth);
        Assert.Equal(128, device.GetPoolStats().Objects);
        Assert.Equal(device.GetStats().ComprDataSize, device.GetPoolStats().BytesStored);

        var back = new byte[Page];
        for (int i = 0; i < 256; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(i is >= 64 and < 192 ? back.AsSpan().IndexOfAnyExcept((byte)0) < 0 : back.AsSpan().SequenceEqual(PageOf(i, 0)),
                $"block {i} reads back wrong");
        }
    }

    [Fact]
    public void Write_zeroes_over_a_range_counts_discarded_pages_and_notify_free_and_no_hole_keeps_them_stored()
    {
        using ZramDevice device = Create(64, 32768);
        for (int i = 0; i < 64; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, PageOf(i, 0), fua: false));
        }

        Assert.Equal(NbdError.None, device.WriteZeroes(0, 32L * Page, noHole: false, fastZero: false));
        Assert.Equal(NbdError.None, device.WriteZeroes(32L * Page, 16L * Page, noHole: true, fastZero: false));
        ZramStats stats = device.GetStats();
        Assert.Equal(32, stats.DiscardedPages);
        // Per whole page, NO_HOLE or not: the kernel's zram_bio_discard serves REQ_OP_WRITE_ZEROES (NOUNMAP too) and counts each.
        Assert.Equal(48, stats.NotifyFree);
        Assert.Equal(32L * Page, stats.OrigDataSize);
        Assert.Equal(16, stats.SamePages);
        device.FlushDeferredFrees();
        Assert.Equal(16, device.GetPoolStats().Objects);
        Assert.Equal(stats.ComprDataSize, device.GetPoolStats().BytesStored);
    }

    [Fact]
    public void A_range_trim_past_the_byte_budget_frees_the_rest_at_once()
    {
        // Incompressible pages: every object is a whole 4096-byte page. A 16 MiB limit gives the queue a byte budget of
        // 5% of it, about 200 of them: far below the 800 trimmed here.
        using ZramDevice device = Create(1024, 32768, memLimit: 16L << 20);
        var random = new Random(5);
        var pages = new byte[1024][];
        for (int i = 0; i < 1024; i++)
        {
            pages[i] = new byte[Page];
            random.NextBytes(pages[i]);
            Assert.Equal(NbdError.None, device.Write((long)i * Page, pages[i], fua: false));
        }

        Assert.Equal(1024, device.GetStats().HugePages);
        long budget = device.DeferredFreeByteBudget;
        Assert.True(budget < 300L * Page);
        Assert.Equal(NbdError.None, device.Trim(0, 800L * Page));
        var pool = device.GetPoolStats();
        Assert.True(pool.DeferredQueueBytes <= budget, $"{pool.DeferredQueueBytes} bytes queued, over the budget of {budget}");
        Assert.True(pool.Objects <= 224 + (budget / Page), $"{pool.Objects} objects: the trimmed pages the queue could not take were not freed");
        device.FlushDeferredFrees();
        Assert.Equal(224, device.GetPoolStats().Objects);
        Assert.Equal(224L * Page, device.GetStats().ComprDataSize);
        var back = new byte[Page];
        for (int i = 0; i < 1024; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(i < 800 ? back.AsSpan().IndexOfAnyExcept((byte)0) < 0 : back.AsSpan().SequenceEqual(pages[i]), $"block {i} reads back wrong");
        }
    }

    [Theory]
    [InlineData(64)]
    [InlineData(32768)]
    [InlineData(null)]   // the default: one entry per block, batches past the high-water mark start no drain
    public void Concurrent_trims_reads_writes_and_compaction_keep_every_block_right(int? queue)
    {
        // Blocks in even 16-block extents are trimmed (over and over, in ranges of several extents); blocks in odd
        // extents are rewritten by their own writer (one writer per extent, so the last version is known). Readers
        // read everything meanwhile: a trimmed block is zeros or its first content, a rewritten one some version
        // of itself, never anything else. A compactor runs throughout.
        const int Extent = 16;
        const int Extents = 64;
        const int Slots = Extent * Extents;
        using ZramDevice device = Create(Slots, queue);
        for (int i = 0; i < Slots; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, PageOf(i, 0), fua: false));
        }

        var last = new int[Slots];
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var stop = new CancellationTokenSource();
        var threads = new List<Thread>();
        void Start(Action body) => threads.Add(new Thread(() =>
        {
            try
            {
                body();
            }
            catch (Exception e)
            {
                failures.Enqueue(e.ToString());
            }
        }));

        for (int t = 0; t < 2; t++)
        {
            int seed = t;
            Start(() =>
            {
                var random = new Random(seed);
                for (int op = 0; op < 400; op++)
                {
                    // 1..4 even extents and the odd ones between them are not touched: trim each even extent of the run.
                    int first = random.Next(Extents / 2) * 2;
                    int runs = random.Next(1, 5);
                    for (int e = first; e < Math.Min(first + (runs * 2), Extents); e += 2)
                    {
                        Assert.Equal(NbdError.None, device.Trim((long)e * Extent * Page, (long)Extent * Page));
                    }
                }
            });
        }

        for (int t = 0; t < 2; t++)
        {
            int writer = t;
            Start(() =>
            {
                var random = new Random(100 + writer);
                for (int op = 0; op < 1500; op++)
                {
                    // Writer w owns the odd extents 4k+1+2w.
                    int e = (random.Next(Extents / 4) * 4) + 1 + (2 * writer);
                    int block = (e * Extent) + random.Next(Extent);
                    int version = ++last[block];
                    Assert.Equal(NbdError.None, device.Write((long)block * Page, PageOf(block, version), fua: false));
                }
            });
        }

        for (int t = 0; t < 2; t++)
        {
            int seed = 200 + t;
            Start(() =>
            {
                var random = new Random(seed);
                var back = new byte[Extent * Page];
                while (!stop.IsCancellationRequested)
                {
                    int e = random.Next(Extents);
                    Assert.Equal(NbdError.None, device.Read((long)e * Extent * Page, back));
                    for (int b = 0; b < Extent; b++)
                    {
                        int block = (e * Extent) + b;
                        ReadOnlySpan<byte> page = back.AsSpan(b * Page, Page);
                        bool ok = e % 2 == 0
                            ? page.IndexOfAnyExcept((byte)0) < 0 || (IsPageOf(page, block, out int v0) && v0 == 0)
                            : IsPageOf(page, block, out _);
                        if (!ok)
                        {
                            failures.Enqueue($"block {block} (extent {e}) read something it never held");
                        }
                    }
                }
            });
        }

        // At least one compaction whenever this thread starts: on a quiet machine the trimmers and writers can
        // finish (in tens of milliseconds) before it has run once (compactions was 0 once).
        long compactions = 0;
        Start(() =>
        {
            do
            {
                device.Compact();
                compactions++;
                Thread.Yield();
            }
            while (!stop.IsCancellationRequested);
        });

        foreach (Thread thread in threads)
        {
            thread.Start();
        }

        // Trimmers and writers (the first four) finish; then readers and the compactor are stopped.
        for (int i = 0; i < 4; i++)
        {
            Assert.True(threads[i].Join(TimeSpan.FromMinutes(5)), "a trimmer or writer hung");
        }

        stop.Cancel();
        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(TimeSpan.FromMinutes(5)));
        }

        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(5)));
        Assert.True(compactions > 0);

        // One last trim of every even extent: they all read zeros; the odd ones their last version.
        for (int e = 0; e < Extents; e += 2)
        {
            Assert.Equal(NbdError.None, device.Trim((long)e * Extent * Page, (long)Extent * Page));
        }

        device.FlushDeferredFrees();
        var page = new byte[Page];
        for (int block = 0; block < Slots; block++)
        {
            Assert.Equal(NbdError.None, device.Read((long)block * Page, page));
            Assert.True((block / Extent) % 2 == 0 ? page.AsSpan().IndexOfAnyExcept((byte)0) < 0 : page.AsSpan().SequenceEqual(PageOf(block, last[block])),
                $"block {block} ends wrong");
        }

        // The pool holds exactly the odd extents' objects, and agrees with the device's counters.
        ZramStats stats = device.GetStats();
        var pool = device.GetPoolStats();
        Assert.Equal(0, pool.DeferredQueueDepth);
        Assert.Equal(Slots / 2 * (long)Page, stats.OrigDataSize);
        Assert.Equal(Slots / 2, pool.Objects);
        Assert.Equal(stats.ComprDataSize, pool.BytesStored);
    }

    [Theory]
    [InlineData(4)]
    [InlineData(32768)]
    [InlineData(null)]
    public void Trimming_a_range_of_deduplicated_pages_keeps_their_other_owners_data(int? queue)
    {
        using ZramDevice device = Create(512, queue, dedup: true);
        byte[] shared = DevicePages.TextPage(11);
        // Blocks 0..255 hold the shared page (every fourth) or a page of their own; 300..309 share it too.
        for (int i = 0; i < 256; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, i % 4 == 0 ? shared : PageOf(i, 0), fua: false));
        }

        for (int i = 300; i < 310; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, shared, fua: false));
        }

        Assert.Equal(1 + 192, device.GetPoolStats().Objects);
        Assert.Equal(NbdError.None, device.Trim(0, 256L * Page));
        device.FlushDeferredFrees();
        // The shared object stays (ten slots still refer to it); the 192 of the trimmed blocks' own are gone.
        Assert.Equal(1, device.GetPoolStats().Objects);
        var back = new byte[Page];
        for (int i = 0; i < 512; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(i is >= 300 and < 310 ? back.AsSpan().SequenceEqual(shared) : back.AsSpan().IndexOfAnyExcept((byte)0) < 0,
                $"block {i} reads back wrong");
        }

        Assert.Equal(10L * Page, device.GetStats().OrigDataSize);
        Assert.Equal(9, device.GetStats().DedupPages);

        // The last references go in one range too: then the object is freed.
        Assert.Equal(NbdError.None, device.Trim(300L * Page, 10L * Page));
        device.FlushDeferredFrees();
        Assert.Equal(0, device.GetPoolStats().Objects);
        Assert.Equal(0, device.GetStats().ComprDataSize);
    }
}
