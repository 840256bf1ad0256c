using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Writeback;
using ZramDaemon.Tests.Daemon;
using ZramDaemon.Tests.Device.Recompression;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>Writeback to a backing file (zram's backing_dev): under a memory limit far below the data, on request, with a daily limit.</summary>
public sealed class WritebackTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-writeback-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private ZramDevice Create(long size, long memLimit = 0, long dailyLimit = 0, int watermark = 80)
        => new(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = size,
            MemLimit = memLimit,
            BackingFile = Path.Combine(_dir, "zram0.wb"),
            WritebackLimitPerDay = dailyLimit,
            WritebackWatermarkPercent = watermark,
            CompactInterval = TimeSpan.FromMilliseconds(50),
        }, NullLoggerFactory.Instance);

    /// <summary>
    /// A 16 MiB device whose background writeback and compaction start only at the limit itself (watermarks 100%),
    /// with no timer: as if the background thread got no CPU, which is when writes reach the limit.
    /// </summary>
    private ZramDevice CreateLeftAlone(long limit)
        => new(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 16L << 20,
            MemLimit = limit,
            BackingFile = Path.Combine(_dir, "zram0.wb"),
            WritebackWatermarkPercent = 100,
            CompactWatermarkPercent = 100,
            CompactThresholdPages = 0,
            CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance);

    /// <summary>Bytes the filesystem holds for the file (st_blocks x 512), from stat(1).</summary>
    private static long AllocatedBytes(string path)
    {
        using var stat = Process.Start(new ProcessStartInfo("stat", ["-c", "%b %B", path]) { RedirectStandardOutput = true })!;
        string[] fields = stat.StandardOutput.ReadToEnd().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        stat.WaitForExit();
        return long.Parse(fields[0], CultureInfo.InvariantCulture) * long.Parse(fields[1], CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// writeback type=incompressible (the kernel's ZRAM_INCOMPRESSIBLE): the huge pages a recompression tried and could
    /// not shrink, not the huge ones it shrank, nor the ones it has not tried, nor small objects.
    /// </summary>
    [Fact]
    public void Writeback_type_incompressible_takes_the_huge_pages_recompression_could_not_shrink()
    {
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 1L << 20,
            BackingFile = Path.Combine(_dir, "zram0.wb"),
            RecompressAlgorithm = "zstd:3",
        }, NullLoggerFactory.Instance);
        var random = new Random(11);
        var model = new byte[32][];
        for (int i = 0; i < model.Length; i++)
        {
            // 0-7 text, 8-15 nibbles (huge with lz4, shrunk by zstd), 16-23 random (huge whatever tries), 24-31
            // random, written after the recompression (huge, never tried).
            model[i] = i < 8 ? DevicePages.TextPage(i) : i < 16 ? RecompressionTests.NibblePage(random) : RandomPage(random);
            if (i < 24)
            {
                Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
            }
        }

        Assert.Equal(0, device.Writeback(SlotSelection.Incompressible).WrittenBack);
        device.Recompress(SlotSelection.All);
        for (int i = 24; i < model.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
        }

        Assert.Equal(16, device.GetStats().HugePages);
        Assert.Equal(8, device.Writeback(SlotSelection.Incompressible).WrittenBack);
        Assert.Equal(8, device.GetStats().HugePages);
        Assert.Equal(0, device.Writeback(SlotSelection.Incompressible).WrittenBack);
        var back = new byte[Page];
        for (int i = 0; i < model.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(model[i]), $"slot {i} reads back different");
        }
    }

    [Fact]
    public void With_a_limit_far_below_the_data_every_write_succeeds_every_block_reads_back_and_usage_stays_under_it()
    {
        const long size = 48L << 20;
        const long limit = 4L << 20;
        using ZramDevice device = Create(size, limit);
        int slots = (int)(size / Page);
        var model = new byte[slots][];
        var random = new Random(11);
        long maxUsed = 0;

        void Check()
        {
            long used = device.MemUsedTotal;
            maxUsed = Math.Max(maxUsed, used);
            Assert.True(used <= limit, $"mem_used_total {used} passed the limit {limit}");
        }

        // Fill the whole device (12288 pages of text, nibbles and random: ~25 MiB compressed), then overwrite,
        // write partial pages and trim at random.
        for (int i = 0; i < slots; i++)
        {
            model[i] = random.Next(8) switch
            {
                0 => RecompressionTests.NibblePage(random),
                1 => RandomPage(random),
                _ => DevicePages.TextPage(random.Next(1 << 20)),
            };
            Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
            Check();
        }

        for (int op = 0; op < 6000; op++)
        {
            int i = random.Next(slots);
            switch (random.Next(10))
            {
                case 0:
                    Assert.Equal(NbdError.None, device.Trim((long)i * Page, Page));
                    model[i] = new byte[Page];
                    break;
                case 1:
                    int at = 512 * random.Next(1, 8);
                    byte[] part = DevicePages.TextPage(random.Next(1 << 20));
                    Assert.Equal(NbdError.None, device.Write(((long)i * Page) + at, part.AsSpan(0, Page - at), fua: false));
                    model[i] = (byte[])model[i].Clone();
                    part.AsSpan(0, Page - at).CopyTo(model[i].AsSpan(at));
                    break;
                case < 6:
                    model[i] = DevicePages.TextPage(random.Next(1 << 20));
                    Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
                    break;
                default:
                    var page = new byte[Page];
                    Assert.Equal(NbdError.None, device.Read((long)i * Page, page));
                    Assert.True(page.AsSpan().SequenceEqual(model[i]), $"slot {i} reads back different");
                    break;
            }

            Check();
        }

        var back = new byte[Page];
        for (int i = 0; i < slots; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(model[i]), $"slot {i} reads back different");
        }

        ZramStats stats = device.GetStats();
        Assert.Equal(0, stats.FailedWrites);
        Assert.Equal(0, stats.FailedReads);
        Assert.True(stats.MemUsedTotal <= limit);
        Assert.True(stats.BdCount > slots / 2, $"only {stats.BdCount} of {slots} pages in the backing file");
        Assert.True(stats.BdWrites >= stats.BdCount);
        Assert.True(stats.BdReads > 0);
        Assert.Equal(model.Count(p => p.AsSpan().IndexOfAnyExcept((byte)0) >= 0) * (long)Page, stats.OrigDataSize);

        // Trimming everything frees every block, and the file's space with it (punched holes).
        long allocated = AllocatedBytes(device.BackingFilePath!);
        Assert.True(allocated >= stats.BdCount * Page / 2, $"the file holds {allocated} bytes for {stats.BdCount} blocks");
        Assert.Equal(NbdError.None, device.Trim(0, size));
        // A background writeback run may have a batch staged across the trim (up to 32 blocks, counted from staging):
        // its flush finds the slots trimmed and gives the blocks back, within that run (a run here saw 32 just after).
        var waited = Stopwatch.StartNew();
        while (device.GetStats().BdCount != 0 && waited.Elapsed < TimeSpan.FromSeconds(30))
        {
            Thread.Sleep(10);
        }

        Assert.Equal(0, device.GetStats().BdCount);
        // By the background tick (every 50 ms here), not by the trim itself.
        waited.Restart();
        while (AllocatedBytes(device.BackingFilePath!) >= allocated / 10 && waited.Elapsed < TimeSpan.FromSeconds(30))
        {
            Thread.Sleep(50);
        }

        Assert.True(AllocatedBytes(device.BackingFilePath!) < allocated / 10, "trimmed blocks were not punched out of the file");
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.True(back.AsSpan().IndexOfAnyExcept((byte)0) < 0);
    }

    /// <summary>
    /// The other way round from the test above: no huge page to give up, only text objects of other classes, which free
    /// a page only once compaction packs what is left. The pool is compact and full to the limit when the first
    /// incompressible page comes.
    /// </summary>
    [Fact]
    public void At_the_limit_with_only_text_stored_a_huge_page_writes_text_back_and_compacts_instead_of_failing()
    {
        using ZramDevice device = Create(32L << 20, watermark: 100);
        var model = new List<byte[]>();
        for (int i = 0; i < 1024; i++)
        {
            model.Add(DevicePages.TextPage(i));
            Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
        }

        // Just above usage, so that the background writeback (at 100 % of the limit) stays out of it.
        device.Compact();
        device.SetMemLimit(device.MemUsedTotal + 1);
        long limit = device.GetStats().MemLimit; // rounded up to a page, as the kernel's
        Assert.Equal(0, device.GetStats().HugePages);
        var random = new Random(5);
        for (int i = 1024; i < 1040; i++)
        {
            model.Add(RandomPage(random));
            Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
            Assert.True(device.MemUsedTotal <= limit);
        }

        var back = new byte[Page];
        for (int i = 0; i < model.Count; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(model[i]), $"slot {i} reads back different");
        }

        ZramStats stats = device.GetStats();
        Assert.Equal(0, stats.FailedWrites);
        Assert.True(stats.BdCount > 0);
    }

    [Fact]
    public void At_the_limit_a_write_of_a_size_class_with_no_objects_yet_writes_others_back_instead_of_failing()
    {
        // Only huge pages are stored, then a text page needs a class that holds no object to give up: huge ones must
        // go to the file instead.
        const long limit = 2L << 20;
        using ZramDevice device = CreateLeftAlone(limit);
        var random = new Random(3);
        var model = new byte[1100][];
        for (int i = 0; i < model.Length; i++)
        {
            model[i] = i < 1024 ? RandomPage(random) : DevicePages.TextPage(i);
            Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
            Assert.True(device.MemUsedTotal <= limit);
        }

        ZramStats stats = device.GetStats();
        Assert.Equal(0, stats.FailedWrites);
        Assert.True(stats.BdCount > 512, $"only {stats.BdCount} pages in the backing file");
        var back = new byte[Page];
        for (int i = 0; i < model.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(model[i]), $"slot {i} reads back different");
        }
    }

    /// <summary>
    /// At the limit a write makes room by writing other slots back, and the slot it replaces only when none other can
    /// go: that one's old object is freed as soon as the write is done, so writing it back would cost a write and the
    /// daily budget for nothing. Found by review: the search went round from where the last one stopped, and took
    /// the slot being written when it came first.
    /// </summary>
    [Fact]
    public void At_the_limit_a_write_makes_room_with_other_slots_before_the_one_it_replaces()
    {
        using ZramDevice device = CreateLeftAlone(1L << 20);
        byte[] page = DevicePages.TextPage(7); // one content, so one size class: any slot's object makes room
        int filled = 0;
        while (device.GetStats().BdWrites < 4)
        {
            Assert.Equal(NbdError.None, device.Write((long)filled * Page, page, fua: false));
            filled++;
        }

        // Now at the limit: each write of the slot the search would take next needs room (or finds what the last
        // one freed).
        var cursor = typeof(ZramDevice).GetField("_writebackCursor", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!;
        long before = device.GetStats().BdWrites;
        for (int round = 0; round < 32; round++)
        {
            int next = (int)cursor.GetValue(device)!;
            Assert.True(next < filled, $"the search starts at slot {next}, past the {filled} written");
            Assert.Equal(NbdError.None, device.Write((long)next * Page, page, fua: false));
        }

        ZramStats stats = device.GetStats();
        Assert.True(stats.BdWrites > before, "no write needed room");
        Assert.True(stats.BdWrites == stats.BdCount, $"{stats.BdWrites} pages written back, {stats.BdCount} still in the file: the writes wrote back the slots they replaced");
        var back = new byte[Page];
        for (int i = 0; i < filled; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(page), $"slot {i} reads back different");
        }
    }

    /// <summary>
    /// At the limit, a same-filled page whose value needs a pool word (8 bytes of handle cell) makes room as an object
    /// does: objects written back give up their cells and pages, and every write succeeds under the limit.
    /// </summary>
    [Fact]
    public void At_the_limit_same_filled_pages_that_need_pool_words_write_others_back_instead_of_failing()
    {
        const long limit = 1L << 20;
        using ZramDevice device = CreateLeftAlone(limit);
        var random = new Random(5);
        var model = new byte[4096][];
        int i = 0;
        for (; device.MemUsedTotal < limit - (16 << 10); i++)
        {
            model[i] = RandomPage(random);
            Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
        }

        long writtenBack = device.GetStats().BdCount;
        for (; i < model.Length; i++)
        {
            model[i] = DevicePages.SameFilled(0x5A00_0000_0000_0000UL | (uint)i);
            Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
            Assert.True(device.MemUsedTotal <= limit, $"mem_used_total {device.MemUsedTotal} past the limit after slot {i}");
        }

        ZramStats stats = device.GetStats();
        Assert.Equal(0, stats.FailedWrites);
        Assert.True(stats.BdCount > writtenBack, "nothing was written back to make room for the words");
        var back = new byte[Page];
        for (i = 0; i < model.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(model[i]), $"slot {i} reads back different");
        }
    }

    /// <summary>
    /// As above, with the pool full of one size class at a time across the range: a huge page must write back
    /// whichever class the pool holds. The device skips zeroing its locals, and the search through the classes
    /// once kept its "nothing left in this class" flags in a stackalloc it never cleared: whatever earlier calls
    /// had left there made it pass over classes that had plenty to write back (in a soak, the classes of 2 and
    /// 3 KiB objects), and the write failed with ENOSPC.
    /// </summary>
    [Theory]
    [InlineData(200)]
    [InlineData(700)]
    [InlineData(1200)]
    [InlineData(1700)]
    [InlineData(2000)]
    [InlineData(2400)]
    [InlineData(2900)]
    [InlineData(3300)]
    public void At_the_limit_a_huge_page_writes_back_whichever_size_class_the_pool_holds(int randomBytes)
    {
        const long limit = 512L << 10;
        using ZramDevice device = CreateLeftAlone(limit);
        var random = new Random(randomBytes);
        var model = new byte[4096][];
        for (int i = 0; i < model.Length; i++)
        {
            // Random bytes then zeros: every object of the fill is of about the same size, so of one class.
            model[i] = i < 4000 ? RandomPrefixPage(random, randomBytes) : RandomPage(random);
            Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
            Assert.True(device.MemUsedTotal <= limit);
        }

        Assert.Equal(0, device.GetStats().FailedWrites);
        var back = new byte[Page];
        for (int i = 0; i < model.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(model[i]), $"slot {i} reads back different");
        }
    }

    private static byte[] RandomPrefixPage(Random random, int randomBytes)
    {
        var page = new byte[Page];
        random.NextBytes(page.AsSpan(0, randomBytes));
        return page;
    }

    /// <summary>bd_reads counts the reads issued to the file, as the kernel's read_from_bdev counts before its bio: a read
    /// that fails (the file cut short under the device) counts too, and so does one that succeeds.</summary>
    [Fact]
    public void Bd_reads_counts_a_read_from_the_file_that_fails_as_the_kernel_does()
    {
        using ZramDevice device = Create(1L << 20);
        Assert.Equal(NbdError.None, device.Write(0, DevicePages.TextPage(1), fua: false));
        Assert.Equal(NbdError.None, device.Write(Page, DevicePages.TextPage(2), fua: false));
        Assert.Equal(2, device.Writeback(SlotSelection.All).WrittenBack);

        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.Equal(DevicePages.TextPage(1), back);
        Assert.Equal(1, device.GetStats().BdReads);

        ClientTool.Run("truncate", ["-s", "0", Path.Combine(_dir, "zram0.wb")]).EnsureSuccess();
        Assert.Equal(NbdError.IO, device.Read(Page, back));
        Assert.Equal(2, device.GetStats().BdReads);
    }

    /// <summary>The kernel's zram_reset_device zeroes every stat; a reset here zeroes what counts events as well as
    /// what describes the data (bd_reads, bd_writes, pages_compacted and the compaction runs used to survive it).</summary>
    [Fact]
    public void Reset_zeroes_the_event_counters_as_the_kernel_does()
    {
        using ZramDevice device = Create(16L << 20);
        for (int i = 0; i < 1024; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        for (int i = 0; i < 1024; i += 2)
        {
            Assert.Equal(NbdError.None, device.Trim((long)i * Page, Page));
        }

        Assert.True(device.Compact() > 0);
        Assert.True(device.Writeback(SlotSelection.All).WrittenBack > 0);
        Assert.Equal(NbdError.None, device.Read(Page, new byte[Page]));
        ZramStats before = device.GetStats();
        Assert.True(before.BdReads > 0 && before.BdWrites > 0 && before.PagesCompacted > 0 && before.CompactionRuns > 0);

        device.Reset();
        ZramStats after = device.GetStats();
        Assert.Equal((0L, 0L, 0L, 0L, 0L), (after.BdCount, after.BdReads, after.BdWrites, after.PagesCompacted, after.CompactionRuns));
        Assert.Equal((0L, 0L), (after.RecompressedPages, after.RecompressBytesSaved));
    }

    /// <summary>A reset punches the written-back blocks out of the file itself (no background tick here), and the blocks
    /// trims gave back are reused when the file is full, before any tick punched them: the whole device written back,
    /// trimmed and written back again.</summary>
    [Fact]
    public void Blocks_given_back_are_reused_before_any_tick_and_a_reset_punches_them_out()
    {
        using ZramDevice device = CreateLeftAlone(limit: 0);
        int slots = (int)(device.Size / Page);
        for (int round = 0; round < 2; round++)
        {
            for (int i = 0; i < slots; i++)
            {
                Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage((round * slots) + i), fua: false));
            }

            Assert.Equal(slots, device.Writeback(SlotSelection.All).WrittenBack);
            Assert.Equal(slots, device.GetStats().BdCount);
            if (round == 0)
            {
                Assert.Equal(NbdError.None, device.Trim(0, device.Size));
                Assert.Equal(0, device.GetStats().BdCount);
            }
        }

        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(7L * Page, back));
        Assert.True(back.AsSpan().SequenceEqual(DevicePages.TextPage(slots + 7)));

        long allocated = AllocatedBytes(device.BackingFilePath!);
        Assert.True(allocated >= (long)slots * Page / 2, $"the file holds {allocated} bytes for {slots} blocks");
        device.Reset();
        Assert.Equal(0, device.GetStats().BdCount);
        Assert.True(AllocatedBytes(device.BackingFilePath!) < allocated / 10, "a reset left the written-back blocks in the file");
    }

    [Fact]
    public void Huge_idle_takes_only_the_slots_both_huge_and_idle()
    {
        using ZramDevice device = Create(16L << 20);
        var random = new Random(9);
        byte[][] pages = Enumerable.Range(0, 8).Select(i => i < 4 ? RecompressionTests.NibblePage(random) : DevicePages.TextPage(i)).ToArray();
        for (int i = 0; i < pages.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, pages[i], fua: false));
        }

        // Pages 0-3 huge, 4-7 not; all idle, then 0 and 4 read (active again): huge and idle are 1, 2 and 3.
        device.MarkIdle();
        Assert.Equal(NbdError.None, device.Read(0, new byte[Page]));
        Assert.Equal(NbdError.None, device.Read(4L * Page, new byte[Page]));
        Assert.Equal(3, device.Writeback(SlotSelection.HugeIdle).WrittenBack);
        Assert.Equal(1, device.GetStats().HugePages);
        Assert.Equal(0, device.Writeback(SlotSelection.HugeIdle).WrittenBack);

        var back = new byte[Page];
        for (int i = 0; i < pages.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(pages[i]), $"slot {i} reads back different");
        }
    }

    [Fact]
    public void Idle_slots_written_back_on_request_read_back_and_free_their_memory()
    {
        using ZramDevice device = Create(16L << 20);
        byte[][] pages = Enumerable.Range(0, 1024).Select(DevicePages.TextPage).ToArray();
        for (int i = 0; i < pages.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, pages[i], fua: false));
        }

        var random = new Random(3);
        byte[] huge = RecompressionTests.NibblePage(random);
        Assert.Equal(NbdError.None, device.Write(2000L * Page, huge, fua: false));
        ZramStats before = device.GetStats();
        Assert.Equal(1, before.HugePages);

        Assert.Equal(0, device.Writeback(SlotSelection.Idle).WrittenBack);
        Assert.Equal(1, device.Writeback(SlotSelection.Huge).WrittenBack);
        device.MarkIdle();
        Assert.Equal(NbdError.None, device.Read(5L * Page, new byte[Page])); // read: active again
        WritebackResult result = device.Writeback(SlotSelection.Idle);
        Assert.Equal(pages.Length - 1, result.WrittenBack);

        ZramStats after = device.GetStats();
        Assert.Equal(pages.Length, after.BdCount);
        Assert.Equal(pages.Length, after.BdWrites);
        Assert.Equal(0, after.HugePages);
        Assert.Equal(before.OrigDataSize, after.OrigDataSize);
        Assert.True(after.ComprDataSize < before.ComprDataSize / 100, "written-back objects still count in compr_data_size");
        Assert.True(after.MemUsedTotal < before.MemUsedTotal - ((before.MemUsedTotal - before.MetadataBytes) * 9 / 10), "the pool did not give the memory back");

        var back = new byte[Page];
        for (int i = 0; i < pages.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(pages[i]), $"slot {i} reads back different");
        }

        Assert.Equal(NbdError.None, device.Read(2000L * Page, back));
        Assert.Equal(huge, back);
        Assert.Equal(pages.Length, device.GetStats().BdReads);

        // Overwriting and trimming written-back slots frees their blocks; partial writes read the block first.
        Assert.Equal(NbdError.None, device.Write(0, pages[1], fua: false));
        Assert.Equal(NbdError.None, device.Trim(Page, Page));
        Assert.Equal(NbdError.None, device.Write((2L * Page) + 512, new byte[512], fua: false));
        Assert.Equal(pages.Length - 3, device.GetStats().BdCount);
        Assert.Equal(NbdError.None, device.Read(2L * Page, back));
        byte[] expected = (byte[])pages[2].Clone();
        expected.AsSpan(512, 512).Clear();
        Assert.Equal(expected, back);
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.Equal(pages[1], back);
    }

    [Fact]
    public void The_daily_limit_stops_writeback_and_then_the_memory_limit_applies_again()
    {
        using ZramDevice device = Create(16L << 20, dailyLimit: 10 * Page);
        for (int i = 0; i < 64; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        WritebackResult result = device.Writeback(SlotSelection.All);
        Assert.Equal(10, result.WrittenBack);
        Assert.Equal(WritebackOutcome.NoBudget, result.StoppedBy);
        Assert.Equal(10, device.GetStats().BdCount);

        // No budget left: at the memory limit, writes fail with ENOSPC as without a backing file.
        device.SetMemLimit(device.MemUsedTotal);
        var random = new Random(1);
        NbdError error = NbdError.None;
        for (int i = 64; i < 4096 && error == NbdError.None; i++)
        {
            error = device.Write((long)i * Page, RandomPage(random), fua: false);
        }

        Assert.Equal(NbdError.NoSpace, error);
        Assert.Equal(10, device.GetStats().BdCount);
    }

    [Fact]
    public void A_device_without_a_backing_file_refuses_writeback_and_disposing_deletes_the_file()
    {
        using var plain = new ZramDevice(new ZramDeviceOptions { Name = "zram1", DiskSize = 1 << 20 }, NullLoggerFactory.Instance);
        Assert.Null(plain.BackingFilePath);
        Assert.Throws<InvalidOperationException>(() => plain.Writeback(SlotSelection.All));

        string path;
        using (ZramDevice device = Create(1 << 20))
        {
            path = device.BackingFilePath!;
            Assert.True(File.Exists(path));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            Assert.Equal((1L << 20) + (WritebackBatch.Capacity * (long)BackingFile.BlockSize) + BackingFile.Trailer.Length, new FileInfo(path).Length); // a block per slot, the batch's, the trailer

        }

        Assert.False(File.Exists(path));
    }

    private static byte[] RandomPage(Random random)
    {
        var page = new byte[Page];
        random.NextBytes(page);
        return page;
    }
}
