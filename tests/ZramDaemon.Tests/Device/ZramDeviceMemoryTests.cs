using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>mem_limit, compaction (manual, automatic, under load) and mem_used_max.</summary>
public class ZramDeviceMemoryTests
{
    private const int Page = ZramDevice.PageSize;

    /// <summary>The smallest mem_limit (but 0) is what the empty device takes plus what its first stored page adds:
    /// at it one incompressible page fits, and a byte less is refused (by the constructor and by SetMemLimit, which
    /// keeps the old limit). Found by review: any limit was taken, and one below the slot table refused every write
    /// that was not a same-filled page with ENOSPC.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_smallest_mem_limit_stores_a_page_and_a_smaller_one_is_refused(bool dedup)
    {
        long minimum = ZramDevice.MinimumMemLimitFor(8L << 20, dedup);
        using (var empty = new ZramDevice(new ZramDeviceOptions { Name = "empty", DiskSize = 8L << 20, Dedup = dedup }, NullLoggerFactory.Instance))
        {
            Assert.Equal(minimum, empty.MemUsedTotal + ZsAlloc.ZsPool.FirstObjectBytes);
        }

        // The largest limit refused: the minimum applies to the limit rounded up to whole pages, as the device keeps it.
        long below = (minimum - 1) / Page * Page;
        Assert.Throws<ArgumentException>(() => new ZramDevice(
            new ZramDeviceOptions { Name = "low", DiskSize = 8L << 20, MemLimit = below, Dedup = dedup }, NullLoggerFactory.Instance));

        using var device = new ZramDevice(new ZramDeviceOptions { Name = "least", DiskSize = 8L << 20, MemLimit = minimum, Dedup = dedup, CompactThresholdPages = 0 },
            NullLoggerFactory.Instance);
        var random = new byte[Page];
        new Random(3).NextBytes(random);
        Assert.Equal(NbdError.None, device.Write(0, random, fua: false));
        Assert.Equal(minimum, device.GetStats().MemUsedTotal);
        new Random(4).NextBytes(random);
        Assert.Equal(NbdError.NoSpace, device.Write(Page, random, fua: false));

        Assert.Throws<ArgumentOutOfRangeException>(() => device.SetMemLimit(below));
        Assert.Equal((minimum + Page - 1) / Page * Page, device.GetStats().MemLimit); // whole pages, as the kernel keeps it
        device.SetMemLimit(0);
        Assert.Equal(NbdError.None, device.Write(Page, random, fua: false));
    }

    [Fact]
    public void Writes_past_the_limit_fail_with_ENOSPC_keep_old_contents_and_trimming_makes_room()
    {
        const long limit = 3L << 20;
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "limit", DiskSize = 64L << 20, MemLimit = limit, CompactThresholdPages = 0 },
            NullLoggerFactory.Instance);
        var random = new Random(5);
        var written = new List<byte[]>();
        NbdError error = NbdError.None;
        while (written.Count < 16384)
        {
            var page = new byte[Page];
            random.NextBytes(page); // incompressible: one pool page each
            error = device.Write((long)written.Count * Page, page, fua: false);
            if (error != NbdError.None)
            {
                break;
            }

            written.Add(page);
        }

        Assert.Equal(NbdError.NoSpace, error);
        ZramStats stats = device.GetStats();
        Assert.True(written.Count > 64, $"only {written.Count} pages fit in {limit} bytes");
        Assert.True(stats.MemUsedTotal <= limit, $"mem_used_total {stats.MemUsedTotal} passed mem_limit {limit}");
        Assert.Equal(limit, stats.MemLimit);
        Assert.Equal(1, stats.FailedWrites);
        Assert.Equal(written.Count * (long)Page, stats.OrigDataSize);
        Assert.True(stats.CompactionRuns >= 1, "the limit path compacts before it refuses");

        // The failing slot was never written, and every earlier page is intact.
        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read((long)written.Count * Page, back));
        Assert.True(back.AsSpan().IndexOfAnyExcept((byte)0) < 0);
        for (int i = 0; i < written.Count; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.Equal(written[i], back);
        }

        // Overwriting a stored page with another incompressible one fails too, and leaves the old one.
        var other = new byte[Page];
        random.NextBytes(other);
        Assert.Equal(NbdError.NoSpace, device.Write(Page, other, fua: false));
        Assert.Equal(NbdError.None, device.Read(Page, back));
        Assert.Equal(written[1], back);
        // So does a partial write into it (read-modify-write under the slot lock).
        Assert.Equal(NbdError.NoSpace, device.Write(Page + 512, other.AsSpan(0, 1024), fua: false));
        Assert.Equal(NbdError.None, device.Read(Page, back));
        Assert.Equal(written[1], back);
        Assert.Equal(3, device.GetStats().FailedWrites);

        // Trim half of it: the same number of new pages fit again.
        Assert.Equal(NbdError.None, device.Trim(0, (long)(written.Count / 2) * Page));
        int refilled = 0;
        for (int i = 0; i < written.Count / 2 - 8; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, written[i], fua: false));
            refilled++;
        }

        Assert.True(refilled > 32);
        for (int i = 0; i < written.Count; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.Equal(i >= refilled && i < written.Count / 2 ? new byte[Page] : written[i], back);
        }

        Assert.True(device.GetStats().MemUsedTotal <= limit);
    }

    /// <summary>
    /// The case the writeback test of the same name makes room in, without a backing file: a compact pool of text
    /// pages full to the limit, each class's last zspage partly used, so that no compaction frees a page. An
    /// incompressible page needs a page of its own: it is refused, whether it overwrites a text page or is a partial
    /// write that makes one incompressible, and every slot keeps what it held.
    /// </summary>
    [Fact]
    public void At_the_limit_with_only_text_stored_a_huge_page_fails_with_ENOSPC_and_keeps_the_old_contents()
    {
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "text", DiskSize = 8L << 20, CompactThresholdPages = 0 },
            NullLoggerFactory.Instance);
        var model = new byte[1024][];
        for (int i = 0; i < model.Length; i++)
        {
            model[i] = DevicePages.TextPage(i);
            Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
        }

        // Room for what a refused allocation leaves behind (a zspage descriptor and a handle cell are kept for reuse,
        // not given back), none for a page.
        device.Compact();
        long limit = device.MemUsedTotal + 64;
        device.SetMemLimit(limit);
        long runs = device.GetStats().CompactionRuns;
        var random = new byte[Page];
        new Random(9).NextBytes(random);
        Assert.Equal(NbdError.NoSpace, device.Write(7L * Page, random, fua: false));
        Assert.Equal(NbdError.NoSpace, device.Write(8L * Page + 1024, random.AsSpan(0, 3072), fua: false));
        Assert.Equal(NbdError.NoSpace, device.Write(2000L * Page, random, fua: false));

        ZramStats stats = device.GetStats();
        Assert.Equal(3, stats.FailedWrites);
        Assert.Equal(0, stats.HugePages);
        Assert.True(stats.CompactionRuns > runs, "the limit path compacts before it refuses");
        Assert.True(stats.MemUsedTotal <= limit, $"mem_used_total {stats.MemUsedTotal} passed mem_limit {limit}");
        Assert.Equal(model.Length * (long)Page, stats.OrigDataSize);
        var back = new byte[Page];
        for (int i = 0; i < model.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(model[i]), $"slot {i} reads back different");
        }

        Assert.Equal(NbdError.None, device.Read(2000L * Page, back));
        Assert.True(back.AsSpan().IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public void Lowering_the_limit_refuses_new_allocations_and_zero_pages_still_fit()
    {
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "setlimit", DiskSize = 8L << 20 }, NullLoggerFactory.Instance);
        for (int i = 0; i < 64; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        Assert.True(device.MinimumMemLimit < device.GetStats().MemUsedTotal);
        device.SetMemLimit(device.MinimumMemLimit);
        var random = new byte[Page];
        new Random(1).NextBytes(random);
        Assert.Equal(NbdError.NoSpace, device.Write(100L * Page, random, fua: false));
        // Same-filled pages whose value fits in the slot (zeros, all ones, a repeated 32-bit value) need no memory and
        // are always accepted.
        Assert.Equal(NbdError.None, device.Write(101L * Page, new byte[Page], fua: false));
        Assert.Equal(NbdError.None, device.Write(102L * Page, DevicePages.SameFilled(ulong.MaxValue), fua: false));
        Assert.Equal(NbdError.None, device.Write(103L * Page, DevicePages.SameFilled(0x0000_0007_0000_0007UL), fua: false));
        device.SetMemLimit(0);
        Assert.Equal(NbdError.None, device.Write(100L * Page, random, fua: false));
        Assert.Equal(0, device.GetStats().MemLimit);
        Assert.Throws<ArgumentOutOfRangeException>(() => device.SetMemLimit(-1));
    }

    /// <summary>
    /// A same-filled page whose value does not fit in its slot takes a pool word, a handle cell of 8 bytes, which
    /// counts in mem_used_total like an object: at the limit, with no backing file to make room in, it fails with
    /// ENOSPC and the slot keeps its old contents. Words were stored whatever the limit, 8 bytes past it each.
    /// </summary>
    [Fact]
    public void At_the_limit_a_same_filled_page_that_needs_a_pool_word_fails_with_ENOSPC_and_keeps_the_old_contents()
    {
        const int pages = 2048;
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "words", DiskSize = 16L << 20, CompactThresholdPages = 0 },
            NullLoggerFactory.Instance);
        for (int i = 0; i < 64; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        device.Compact();
        device.SetMemLimit(device.MemUsedTotal + 4096); // room for 512 more cells (and a page's rounding), not for 2048
        long limit = device.GetStats().MemLimit;
        int refused = -1;
        for (int i = 0; i < pages; i++)
        {
            long offset = (64L + i) * Page;
            NbdError error = device.Write(offset, DevicePages.SameFilled(0x5A00_0000_0000_0000UL | (uint)i), fua: false);
            Assert.True(device.MemUsedTotal <= limit, $"mem_used_total {device.MemUsedTotal} past the limit {limit} after word {i}");
            if (error == NbdError.NoSpace)
            {
                refused = i;
                break;
            }

            Assert.Equal(NbdError.None, error);
        }

        Assert.True(refused > 0, "every word was stored: they did not count against the limit");
        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read((64L + refused) * Page, back));
        Assert.True(back.AsSpan().IndexOfAnyExcept((byte)0) < 0, "the refused write changed its slot");
        // Over an object, a refused word leaves the object.
        Assert.Equal(NbdError.NoSpace, device.Write(5L * Page, DevicePages.SameFilled(0x5B00_0000_0000_0001UL), fua: false));
        Assert.Equal(NbdError.None, device.Read(5L * Page, back));
        Assert.Equal(DevicePages.TextPage(5), back);
        // A value that fits in the slot still goes in; every word stored reads back.
        Assert.Equal(NbdError.None, device.Write((64L + refused) * Page, DevicePages.SameFilled(0x0101_0101_0101_0101UL), fua: false));
        Assert.Equal(NbdError.None, device.Read((64L + refused) * Page, back));
        Assert.Equal(DevicePages.SameFilled(0x0101_0101_0101_0101UL), back);
        for (int i = 0; i < refused; i++)
        {
            Assert.Equal(NbdError.None, device.Read((64L + i) * Page, back));
            Assert.Equal(DevicePages.SameFilled(0x5A00_0000_0000_0000UL | (uint)i), back);
        }

        Assert.Equal(refused, device.GetPoolStats().Words);
        Assert.Equal(2, device.GetStats().FailedWrites);
    }

    [Fact]
    public void Trims_and_zero_writes_at_the_limit_free_their_objects_without_passing_it()
    {
        // Neither allocates, so neither checks the limit; but queueing the old objects for a deferred free would
        // count a page of the queue's entries (released by compaction) after usage reached the limit exactly.
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "atlimit", DiskSize = 8L << 20 }, NullLoggerFactory.Instance);
        for (int i = 0; i < 64; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        device.Compact();
        long limit = device.GetStats().MemUsedTotal;
        device.SetMemLimit(limit);

        Assert.Equal(NbdError.None, device.Trim(0, 2 * Page));
        Assert.True(device.GetStats().MemUsedTotal <= limit, $"mem_used_total {device.GetStats().MemUsedTotal} passed mem_limit {limit} after a trim");
        Assert.Equal(NbdError.None, device.Write(2L * Page, new byte[Page], fua: false));
        Assert.True(device.GetStats().MemUsedTotal <= limit, $"mem_used_total {device.GetStats().MemUsedTotal} passed mem_limit {limit} after a zero write");

        // The room the freed objects left takes new data within the limit.
        Assert.Equal(NbdError.None, device.Write(0, DevicePages.TextPage(1000), fua: false));
        Assert.True(device.GetStats().MemUsedTotal <= limit);
        var back = new byte[Page];
        for (int i = 0; i < 64; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.Equal(i switch { 0 => DevicePages.TextPage(1000), 1 or 2 => new byte[Page], _ => DevicePages.TextPage(i) }, back);
        }
    }

    /// <summary>
    /// A trim is how a client makes room at the limit, and a trim that starts or ends inside a slot zeroes that part of
    /// it: a new page to store, which may not fit. The trim must still succeed and empty its whole slots (before, it
    /// failed with ENOSPC and trimmed nothing after the first partial slot); the partial slot stays as it was. A
    /// WRITE_ZEROES of the same range is a write, and fails like one.
    /// </summary>
    [Fact]
    public void An_unaligned_trim_at_the_limit_empties_its_whole_slots_and_leaves_the_partial_one()
    {
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "unaligned", DiskSize = 1L << 20, CompactThresholdPages = 0 },
            NullLoggerFactory.Instance);
        var random = new Random(17);
        var pages = new byte[8][];
        for (int i = 0; i < pages.Length; i++)
        {
            pages[i] = new byte[Page];
            random.NextBytes(pages[i]); // incompressible: a pool page each, and nothing else in the pool to share one with
            Assert.Equal(NbdError.None, device.Write((long)i * Page, pages[i], fua: false));
        }

        device.Compact();
        device.SetMemLimit(device.GetStats().MemUsedTotal);

        // From the middle of slot 1 to the middle of slot 5: zeroing part of slot 1 needs a page more than there is.
        Assert.Equal(NbdError.NoSpace, device.WriteZeroes(Page + 512, (4 * Page) - 512, noHole: false, fastZero: false));
        Assert.Equal(NbdError.None, device.Trim(Page + 512, 4 * Page));
        ZramStats stats = device.GetStats();
        Assert.Equal(5L * Page, stats.OrigDataSize); // slots 2, 3 and 4 emptied
        Assert.Equal(1, stats.FailedWrites); // the WRITE_ZEROES only

        // With slots 2-4 gone there is room again; the partial slots of the trim are each zeroed or untouched.
        var back = new byte[Page];
        for (int i = 0; i < pages.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            byte[] expected = (byte[])pages[i].Clone();
            if (i is >= 2 and <= 4)
            {
                expected = new byte[Page];
            }
            else if (i == 5 && back.AsSpan(0, 512).IndexOfAnyExcept((byte)0) < 0)
            {
                Array.Clear(expected, 0, 512); // the room slots 2-4 left let the trim zero slot 5's part
            }

            Assert.True(back.AsSpan().SequenceEqual(expected), $"slot {i} reads back different");
        }
    }

    [Fact]
    public void Compaction_under_load_keeps_every_byte_and_gives_memory_back()
    {
        const int slots = 4096;
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "compact",
            DiskSize = (long)slots * Page,
            CompactThresholdPages = 8,
            CompactInterval = TimeSpan.FromMilliseconds(5),
        }, NullLoggerFactory.Instance);
        var model = new byte[slots * Page];
        const int threads = 4;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            // Each thread owns a quarter of the device; sizes vary so that classes fragment.
            var random = new Random(t + 77);
            int firstSlot = t * (slots / threads);
            var back = new byte[Page];
            for (int op = 0; op < 6000; op++)
            {
                int slot = firstSlot + random.Next(slots / threads);
                long offset = (long)slot * Page;
                int r = random.Next(10);
                if (r < 5)
                {
                    byte[] page = DevicePages.TextPage(random.Next(1000)).ToArray();
                    random.NextBytes(page.AsSpan(0, random.Next(64, 2048))); // a random prefix: many object sizes
                    Assert.Equal(NbdError.None, device.Write(offset, page, fua: false));
                    page.CopyTo(model, offset);
                }
                else if (r < 8)
                {
                    Assert.Equal(NbdError.None, device.Trim(offset, Page));
                    Array.Clear(model, (int)offset, Page);
                }
                else
                {
                    Assert.Equal(NbdError.None, device.Read(offset, back));
                    Assert.True(back.AsSpan().SequenceEqual(model.AsSpan((int)offset, Page)), $"slot {slot} differs");
                }
            }
        });

        ZramStats loaded = device.GetStats();
        // The compactor's thread may not have had a CPU during the load on a loaded machine; it runs at its next tick.
        Assert.True(SpinWait.SpinUntil(() => device.GetStats().CompactionRuns > 0, TimeSpan.FromSeconds(30)), "the background compactor never ran");

        var all = new byte[model.Length];
        Assert.Equal(NbdError.None, device.Read(0, all));
        Assert.True(all.AsSpan().SequenceEqual(model), "data changed under compaction");

        // Trim every other slot: fragmentation; then compaction gives pages back. The background compactor may
        // take part of it (or all, between the last trim and the call below): count what either one did.
        long compactedBeforeTrims = device.GetStats().PagesCompacted;
        for (int slot = 0; slot < slots; slot += 2)
        {
            Assert.Equal(NbdError.None, device.Trim((long)slot * Page, Page));
            Array.Clear(model, slot * Page, Page);
        }

        device.Compact();
        ZramStats after = device.GetStats();
        Assert.True(after.PagesCompacted > compactedBeforeTrims, $"no page was compacted after the trims ({after.PagesCompacted} in all)");
        Assert.True(after.MemUsedTotal < loaded.MemUsedTotal, $"mem_used_total {after.MemUsedTotal} did not fall below {loaded.MemUsedTotal}");
        Assert.True(after.CompactionTime > TimeSpan.Zero);
        Assert.Equal(NbdError.None, device.Read(0, all));
        Assert.True(all.AsSpan().SequenceEqual(model), "data changed by compaction");
    }

    [Fact]
    public void Threshold_compaction_waits_while_writes_refill_the_freed_slots_and_runs_once_they_stop()
    {
        // The background thread never ticks here (an hour apart): the test makes each tick's decision itself.
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "busy",
            DiskSize = 2048L * Page,
            CompactThresholdPages = 1,
            CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance);
        int next = 0;

        // Writes store more between two ticks than compaction could free (more than the whole pool), then trims
        // leave half of it freeable.
        void WriteMoreThanThePoolThenTrimHalf()
        {
            long start = device.GetPoolStats().BytesAllocated;
            while (device.GetPoolStats().BytesAllocated - start <= 2 * (device.GetPoolStats().PagesUsed + 1) * Page)
            {
                for (int i = 0; i < 256; i++, next++)
                {
                    Assert.Equal(NbdError.None, device.Write((long)(next % 2048) * Page, DevicePages.TextPage(next), fua: false));
                }
            }

            for (int slot = 0; slot < 2048; slot += 2)
            {
                Assert.Equal(NbdError.None, device.Trim((long)slot * Page, Page));
            }

            device.FlushDeferredFrees();
        }

        WriteMoreThanThePoolThenTrimHalf();
        Assert.Equal("threshold while writing", device.CompactionDue()); // the first one runs at once

        WriteMoreThanThePoolThenTrimHalf();
        Assert.Null(device.CompactionDue()); // the writes would refill what it frees: not again for 30 ticks

        Assert.Equal("threshold", device.CompactionDue()); // nothing written since the last tick
        Assert.True(device.Compact() > 0);
    }

    [Fact]
    public void Background_compaction_starts_at_the_watermark_of_the_limit()
    {
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "watermark",
            DiskSize = 16L << 20,
            MemLimit = 64L << 20,
            CompactWatermarkPercent = 50,
            CompactThresholdPages = 0,
            CompactInterval = TimeSpan.FromMilliseconds(20),
        }, NullLoggerFactory.Instance);
        // Fragment the pool well below the watermark: no compaction yet.
        for (int i = 0; i < 2048; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        for (int i = 0; i < 2048; i += 2)
        {
            Assert.Equal(NbdError.None, device.Trim((long)i * Page, Page));
        }

        Thread.Sleep(200);
        Assert.Equal(0, device.GetStats().CompactionRuns);

        // Lower the limit so usage is past 50% of it: the compactor wakes and runs.
        device.SetMemLimit(device.GetStats().MemUsedTotal * 3 / 2);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (device.GetStats().CompactionRuns == 0 && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(10);
        }

        Assert.True(device.GetStats().CompactionRuns > 0, "no compaction past the watermark");
        Assert.True(device.GetStats().PagesCompacted > 0);
    }

    [Fact]
    public void Garbage_waiting_for_a_deferred_free_never_holds_more_than_half_the_room_above_the_watermark()
    {
        // Limit 16 MiB, watermark 90%: the queue may hold 16 MiB * 10% / 2 = 0.8 MiB. The background thread
        // wakes only when kicked past the watermark (its interval is an hour), as if it never got a CPU: without
        // the byte budget, overwrites would leave about 10 MiB of garbage queued before anything drained it
        // (the queue's own drain starts at 16384 handles).
        const long limit = 16L << 20;
        const long budget = limit * 10 / 200;
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "garbage",
            DiskSize = 64L << 20,
            MemLimit = limit,
            CompactWatermarkPercent = 90,
            CompactThresholdPages = 0,
            CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance);
        var random = new Random(9);
        byte[] HalfRandom()
        {
            var page = new byte[Page];
            random.NextBytes(page.AsSpan(0, Page / 2)); // compresses to a little over 2 KiB
            return page;
        }

        var model = new byte[2048][];
        long deepest = 0;
        for (int pass = 0; pass < 4; pass++)
        {
            for (int i = 0; i < model.Length; i++)
            {
                model[i] = HalfRandom();
                Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
                long queued = device.GetPoolStats().DeferredQueueBytes;
                deepest = Math.Max(deepest, queued);
                Assert.True(queued <= budget, $"pass {pass}, page {i}: {queued} bytes of garbage queued, budget {budget}");
            }
        }

        // Past the budget frees were synchronous: the peak stays near the live data, far from the watermark.
        ZramStats stats = device.GetStats();
        Assert.Equal(0, stats.FailedWrites);
        Assert.True(deepest > budget / 2, $"the queue was used: deepest {deepest}");
        Assert.True(stats.MemUsedMax < limit * 9 / 10, $"mem_used_max {stats.MemUsedMax} reached the watermark with {stats.ComprDataSize} bytes live");

        // The budget follows the limit (zramd set NAME mem_limit=...); without one only the queue's capacity bounds it.
        device.SetMemLimit(64L << 20);
        Assert.Equal((64L << 20) * 10 / 200, device.DeferredFreeByteBudget);
        device.SetMemLimit(0);
        Assert.Equal(long.MaxValue, device.DeferredFreeByteBudget);
        var back = new byte[Page];
        for (int i = 0; i < model.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(model[i]), $"page {i} reads back different");
        }
    }

    [Fact]
    public void Mem_used_max_keeps_the_peak_until_reset()
    {
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "peak", DiskSize = 8L << 20 }, NullLoggerFactory.Instance);
        var random = new Random(2);
        var page = new byte[Page];
        for (int i = 0; i < 512; i++)
        {
            random.NextBytes(page);
            Assert.Equal(NbdError.None, device.Write((long)i * Page, page, fua: false));
        }

        long peak = device.GetStats().MemUsedMax;
        Assert.Equal(NbdError.None, device.Trim(0, 8L << 20));
        device.Compact();
        ZramStats trimmed = device.GetStats();
        Assert.Equal(peak, trimmed.MemUsedMax);
        Assert.True(trimmed.MemUsedTotal < peak / 4);
        Assert.Equal(512, trimmed.DiscardedPages);
        Assert.Equal(2048, trimmed.NotifyFree);
        device.ResetMemUsedMax();
        Assert.Equal(device.GetStats().MemUsedTotal, device.GetStats().MemUsedMax);
    }

    /// <summary>
    /// Trimming half of the device at random leaves free handle cells on every page of the pool's handle table;
    /// compaction moves the live slots' handles (objects and same-filled words) below a mark and gives the cells past
    /// it back, so the metadata falls by about the cells of the trimmed half. Every surviving block reads back the
    /// same, and rewriting the trimmed half takes cells again (the figure rises) and reads back too.
    /// </summary>
    [Fact]
    public void Compaction_after_trimming_half_gives_back_the_handle_cells_and_every_block_still_reads()
    {
        const int Blocks = 40_000;
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "cells", DiskSize = (long)Blocks * Page, CompactThresholdPages = 0 },
            NullLoggerFactory.Instance);
        for (int i = 0; i < Blocks; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, Block(i, 0), fua: false));
        }

        Assert.Equal(Blocks / 10, device.GetPoolStats().Words);
        ZramStats full = device.GetStats();

        // Half of the device in random 64 KiB extents (16 blocks each).
        var random = new Random(11);
        var trimmed = new bool[Blocks];
        int[] extents = Enumerable.Range(0, Blocks / 16).OrderBy(_ => random.Next()).Take(Blocks / 32).ToArray();
        foreach (int extent in extents)
        {
            Assert.Equal(NbdError.None, device.Trim((long)extent * 16 * Page, 16L * Page));
            trimmed.AsSpan(extent * 16, 16).Fill(true);
        }

        device.Compact();
        ZramStats compacted = device.GetStats();
        long live = Blocks - (extents.Length * 16L);
        long expected = (Blocks - live - (live / 128) - 1024) * 8;
        Assert.True(full.MetadataBytes - compacted.MetadataBytes >= expected,
            $"metadata fell from {full.MetadataBytes} to {compacted.MetadataBytes}, less than the {expected} bytes of cells the trims freed");
        Assert.Equal(compacted.MemUsedTotal, device.MemUsedTotal);
        CheckAll(device, trimmed, generation: 0);

        // Rewritten: the trimmed half takes cells again (below the cut first, then past it), and everything reads.
        for (int i = 0; i < Blocks; i++)
        {
            if (trimmed[i])
            {
                Assert.Equal(NbdError.None, device.Write((long)i * Page, Block(i, 1), fua: false));
            }
        }

        Assert.True(device.GetStats().MetadataBytes > compacted.MetadataBytes + (expected / 2), "the rewrites took no cells past the cut");
        for (int i = 0; i < Blocks; i++)
        {
            var back = new byte[Page];
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.Equal(Block(i, trimmed[i] ? 1 : 0), back);
        }
    }

    /// <summary>
    /// Handles move while four threads write, trim and read their own quarter of the device and compactions (each
    /// followed by a handle shrink) run in a loop: no read may differ from what was written, and at the end every
    /// block reads back.
    /// </summary>
    [Fact]
    public void Handles_move_under_load_and_no_block_changes()
    {
        const int Blocks = 48_000;
        const int Threads = 4;
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "moves", DiskSize = (long)Blocks * Page, CompactThresholdPages = 0 },
            NullLoggerFactory.Instance);
        var generation = new int[Blocks]; // -1: trimmed
        for (int i = 0; i < Blocks; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, Block(i, 0), fua: false));
        }

        for (int i = 0; i < Blocks; i += 2)
        {
            Assert.Equal(NbdError.None, device.Trim((long)i * Page, Page));
            generation[i] = -1;
        }

        long filled = device.GetStats().MetadataBytes;
        using var stop = new CancellationTokenSource();
        int compactions = 0;
        var compactor = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                device.Compact();
                compactions++;
            }
        });
        compactor.Start();
        try
        {
            Load();
        }
        finally
        {
            // Stopped before the device is disposed, whatever failed.
            stop.Cancel();
            compactor.Join();
        }

        Assert.True(compactions > 0);

        device.Compact();
        Assert.True(device.GetStats().MetadataBytes < filled, $"metadata {device.GetStats().MetadataBytes} did not fall below {filled}");
        var all = new byte[Page];
        for (int i = 0; i < Blocks; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, all));
            Assert.True(all.AsSpan().SequenceEqual(generation[i] < 0 ? new byte[Page] : Block(i, generation[i])), $"block {i} differs at the end");
        }

        void Load() => Parallel.For(0, Threads, new ParallelOptions { MaxDegreeOfParallelism = Threads }, t =>
        {
            var random = new Random(t + 5);
            var back = new byte[Page];
            int first = t * (Blocks / Threads);
            for (int op = 0; op < 20_000; op++)
            {
                int i = first + random.Next(Blocks / Threads);
                int r = random.Next(10);
                if (r < 3)
                {
                    int next = generation[i] < 0 ? 1 : generation[i] + 1;
                    Assert.Equal(NbdError.None, device.Write((long)i * Page, Block(i, next), fua: false));
                    generation[i] = next;
                }
                else if (r < 5)
                {
                    Assert.Equal(NbdError.None, device.Trim((long)i * Page, Page));
                    generation[i] = -1;
                }
                else
                {
                    Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
                    Assert.True(back.AsSpan().SequenceEqual(generation[i] < 0 ? new byte[Page] : Block(i, generation[i])), $"block {i} differs");
                }
            }
        });
    }

    /// <summary>Block i of a generation: every tenth a same-filled page (a pool word), the rest a small unique object.</summary>
    private static byte[] Block(int i, int generation)
    {
        var page = new byte[Page];
        if (i % 10 == 0)
        {
            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(page.AsSpan()).Fill(0x5A00_0000_0000_0000UL | ((ulong)generation << 32) | (uint)i);
        }
        else
        {
            new Random(i * 7 + generation).NextBytes(page.AsSpan(0, 48));
        }

        return page;
    }

    private static void CheckAll(ZramDevice device, bool[] trimmed, int generation)
    {
        var back = new byte[Page];
        for (int i = 0; i < trimmed.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.Equal(trimmed[i] ? new byte[Page] : Block(i, generation), back);
        }
    }
}
