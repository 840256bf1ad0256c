using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Recompression;
using ZramDaemon.Device.Writeback;
using ZramDaemon.Tests.Device;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (RevF) of today's post-processing changes: largest objects first (SizeBuckets, ZramDevice.LargestFirst),
/// recompression clearing the idle age, and writeback type=incompressible.
/// </summary>
public sealed class RevFPostProcessingTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private const int Small = 8, Large = 8;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-revf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Slots 0..7: text pages (lz4 objects of 2.3 to 2.7 KiB), each made distinct so that dedup shares none;
    /// slots 8..15: 3000 bytes of random nibbles and zeros, which lz4 stores in about 3 KiB (below the huge class) and
    /// zstd in about half.</summary>
    private static void WriteSmallThenLarge(ZramDevice device)
    {
        var random = new Random(11);
        for (int i = 0; i < Small + Large; i++)
        {
            byte[] page;
            if (i < Small)
            {
                page = (byte[])DevicePages.TextPage(i).Clone();
                BitConverter.TryWriteBytes(page.AsSpan(0, 4), 0x5EED0000 + i);
            }
            else
            {
                page = Device.Recompression.RecompressionTests.NibblePage(random);
                page.AsSpan(3000).Clear();
            }

            Assert.Equal(NbdError.None, device.Write((long)i * Page, page, fua: false));
        }

        Assert.Equal(0, device.GetStats().HugePages);
        long smallest = Enumerable.Range(Small, Large).Min(i => ObjectSize(device, i));
        long largest = Enumerable.Range(0, Small).Max(i => ObjectSize(device, i));
        Assert.True(largest / SizeBuckets.BucketBytes < smallest / SizeBuckets.BucketBytes,
            $"precondition: slots 8..15 ({smallest} bytes and more) are in higher buckets than slots 0..7 (up to {largest} bytes)");
    }

    /// <summary>The object's size: from the slot's info when it holds the object, else (a dedup reference, whose info
    /// holds no size) what lz4 makes of the page.</summary>
    private static int ObjectSize(ZramDevice device, int index)
    {
        uint info = device.Slots.PeekInfo(index);
        if (!SlotInfo.IsDeduped(info))
        {
            return SlotInfo.Size(info);
        }

        var page = new byte[Page];
        Assert.Equal(NbdError.None, device.Read((long)index * Page, page));
        using var stream = ZramDaemon.Compression.Compressor.CreateStream(ZramDaemon.Compression.CompressionSpec.Parse("lz4"));
        return stream.Compress(page, ZramDaemon.Compression.CompressionStream.BufferSize);
    }

    private static int CountLarge(ZramDevice device, Func<uint, bool> test)
        => Enumerable.Range(Small, Large).Count(i => test(device.Slots.PeekInfo(i)));

    /// <summary>
    /// FAILS on the current code. ZramDevice is [SkipLocalsInit], and LargestFirst counts the candidates into
    /// "Span&lt;long&gt; counts = stackalloc long[SizeBuckets.Count]" without clearing it (FreePagesByWriteback clears its
    /// own: "[SkipLocalsInit]: a stackalloc holds whatever earlier calls left there"). The bucket counts start from
    /// whatever earlier frames left on the stack. On a device with no candidate at all LargestFirst(8) should return
    /// [0] (one walk, any size); it returns [4096, 0] here (and [4096, 4032, 0] from another caller's stack): which
    /// pages a bounded recompress or writeback takes depends on what the stack held.
    /// </summary>
    [Fact]
    public void LargestFirst_counts_start_from_zero()
    {
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 1L << 20,
            RecompressAlgorithm = "zstd:3",
        }, NullLoggerFactory.Instance);
        var largestFirst = typeof(ZramDevice).GetMethod("LargestFirst", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!
            .CreateDelegate<Func<long, Func<uint, bool>, ZramDaemon.Device.Writeback.PageRange[]?, int[]>>(device);

        var results = new List<string>();
        foreach (long fill in new long[] { 0, -1, 1000 })
        {
            StackFill(fill);
            results.Add(string.Join("/", largestFirst(8, _ => false, null)));
        }

        Assert.True(results.All(r => r == "0"),
            $"LargestFirst(budget 8) with no candidate returned the walks {string.Join(", ", results.Select(r => "[" + r + "]"))}; expected [0] each time: "
            + "its stackalloc'd bucket counts are not cleared in a [SkipLocalsInit] class, so they start from stack garbage");
    }

    /// <summary>
    /// Leaves <paramref name="value"/> in the next 128 KiB of the stack below the caller's frame (some of which the
    /// caller's next call finds in its uninitialized stackalloc).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static long StackFill(long value)
    {
        Span<long> stack = stackalloc long[16384];
        stack.Fill(value);
        return stack[0] + stack[^1];
    }

    /// <summary>
    /// FAILS on the current code: the effect of the uncleared counts above. `recompress max_pages=8` on 8 text objects
    /// (2.3 to 2.7 KiB, slots 0..7) and 8 larger ones (about 3 KiB, slots 8..15, none huge): largest first should try
    /// the 8 larger ones (one walk of objects of at least 3008 bytes, as SizeBuckets.MinimumSizes gives for clean
    /// counts); the garbage counts put the cutoff at 4096 bytes, that walk finds nothing, and the walk of any size then
    /// takes slots 0..7 in index order. (RevKPostProcessingOrderTests pass only because their large objects are huge
    /// pages, 4096 bytes, which the garbage cutoff happens to select.)
    /// </summary>
    [Fact]
    public void Recompress_with_max_pages_takes_the_largest_objects_first_when_none_is_huge()
    {
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 1L << 20,
            RecompressAlgorithm = "zstd:3",
        }, NullLoggerFactory.Instance);
        WriteSmallThenLarge(device);

        RecompressionResult result = device.Recompress(SlotSelection.All, maxPages: Large);

        int largeTried = CountLarge(device, info => (info & SlotInfo.Recompressed) != 0);
        Assert.True(largeTried == Large,
            $"recompress max_pages={Large} tried {result.Candidates} pages ({result.Recompressed} recompressed), {largeTried} of them among "
            + $"the {Large} larger (~3 KiB) objects at slots 8..15; largest first should spend the whole budget on them");
    }

    /// <summary>
    /// FAILS on the current code (for two reasons, the second left once the counts are cleared). On a device with
    /// dedup = yes every stored page is a dedup reference (StoreDeduplicated makes each new page an entry, shared or
    /// not), and LargestFirst counts every deduplicated slot in bucket 0 ("a deduplicated slot's size is known only
    /// under its lock, so it counts as the smallest"); SizeBuckets.MinimumSizes never looks at bucket 0, so with clean
    /// counts it returns [0]: index order. On a dedup device the largest-first change does nothing:
    /// `recompress max_pages=8` tries the 8 smaller objects at slots 0..7 and none of the 8 larger ones.
    /// </summary>
    [Fact]
    public void Recompress_with_max_pages_on_a_dedup_device_takes_the_largest_objects_first()
    {
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 1L << 20,
            RecompressAlgorithm = "zstd:3",
            Dedup = true,
        }, NullLoggerFactory.Instance);
        WriteSmallThenLarge(device);
        Assert.True(Enumerable.Range(0, Small + Large).All(i => SlotInfo.IsDeduped(device.Slots.PeekInfo(i))), "precondition: every slot is a dedup reference");

        RecompressionResult result = device.Recompress(SlotSelection.All, maxPages: Large);

        int largeTried = CountLarge(device, info => (info & SlotInfo.Recompressed) != 0);
        Assert.True(largeTried == Large,
            $"recompress max_pages={Large} on a dedup device tried {result.Candidates} pages ({result.Recompressed} recompressed), "
            + $"{largeTried} of them among the {Large} larger objects; largest first should spend the budget on them, but every dedup slot "
            + "is counted in bucket 0, so the run goes in index order");
    }

    /// <summary>
    /// FAILS on the current code. As above, for writeback: with dedup = yes and a daily writeback_limit of 4 pages,
    /// `writeback type=idle` spends the budget on slots 0..3 (the smaller objects) instead of 4 of the larger ones:
    /// every deduplicated slot counts as the smallest bucket and the run goes in index order.
    /// </summary>
    [Fact]
    public void Writeback_under_a_budget_on_a_dedup_device_takes_the_largest_objects_first()
    {
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 1L << 20,
            Dedup = true,
            BackingFile = Path.Combine(_dir, "zram0.wb"),
            WritebackLimitPerDay = 4 * Page,
        }, NullLoggerFactory.Instance);
        WriteSmallThenLarge(device);
        device.MarkIdle();

        WritebackResult result = device.Writeback(SlotSelection.Idle);

        int largeWritten = CountLarge(device, SlotInfo.IsWrittenBack);
        Assert.True(result.WrittenBack == 4 && largeWritten == 4,
            $"writeback type=idle with a budget of 4 pages on a dedup device wrote back {result.WrittenBack} (stopped by {result.StoppedBy}), "
            + $"{largeWritten} of them among the larger objects; largest first should take 4 of those, but every dedup slot counts as bucket 0 "
            + "and the run goes in index order");
    }

    /// <summary>
    /// FAILS on the current code. `recompress type=huge threshold=1000` on a huge page zstd brings to about 2.1 KiB:
    /// the result is not below the threshold, so RecompressSlot compresses with a capacity of threshold - 1, gets 0, and
    /// returns NotSmaller, leaving the slot marked Recompressed, and so Huge | Recompressed, which is what
    /// SlotSelection.Incompressible selects. `writeback type=incompressible` then writes back a page zstd halves. In
    /// Linux 6.12 recompress_slot only "class_index_new &gt;= class_index_old" sets ZRAM_INCOMPRESSIBLE; "Successful
    /// recompression but above threshold" returns 0 without it (and without ZRAM_RECOMPRESSED). (The 2025 rework of the
    /// recompression loop, after 6.12, folds the threshold into the loop and marks such a page too; zramd follows
    /// 6.12 elsewhere.) Either way zramd's own definition (SlotSelection.Incompressible: "huge slots recompression
    /// tried and could not shrink either: they stay raw in the pool whatever is tried") does not hold for these: a
    /// later recompress without a threshold would halve them, but they are marked and never tried again.
    /// </summary>
    [Fact]
    public void A_huge_page_left_by_a_threshold_is_not_incompressible()
    {
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 1L << 20,
            RecompressAlgorithm = "zstd:3",
            BackingFile = Path.Combine(_dir, "zram0.wb"),
        }, NullLoggerFactory.Instance);
        var random = new Random(3);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, Device.Recompression.RecompressionTests.NibblePage(random), fua: false));
        }

        Assert.Equal(4, device.GetStats().HugePages);
        RecompressionResult tried = device.Recompress(SlotSelection.Huge, threshold: 1000);
        Assert.True(tried.Candidates == 4 && tried.Recompressed == 0, $"precondition: the threshold leaves the 4 huge pages as they are: {tried}");

        WritebackResult written = device.Writeback(SlotSelection.Incompressible);

        Assert.True(written.WrittenBack == 0,
            $"writeback type=incompressible wrote back {written.WrittenBack} of the 4 huge pages that recompress threshold=1000 left only "
            + "because zstd's ~2.1 KiB result was not below 1000 bytes; they are compressible (zstd halves them), and the kernel's "
            + "recompress_slot (6.12) does not mark such a page ZRAM_INCOMPRESSIBLE (\"Successful recompression but above threshold\": return 0)");
    }

    /// <summary>
    /// FAILS on the current code. RecompressSlot marks a slot Recompressed under its lock, then compresses with the
    /// lock released (at zstd:19 a millisecond or two a page), and only then stores the result. For that whole time a
    /// huge slot being recompressed is Huge | Recompressed, which is all SlotSelection.Incompressible looks at: a
    /// `writeback type=incompressible` (or a background run) meanwhile writes back a huge page that recompression is
    /// about to shrink to half a page, and the recompression then finds the slot changed and drops its result. Here
    /// every page is one zstd halves, so none is incompressible, yet writeback type=incompressible, run while
    /// `recompress type=huge` goes, writes some back. (The kernel holds the slot lock for the whole of recompress_slot
    /// and sets ZRAM_INCOMPRESSIBLE only after the last algorithm failed.)
    /// </summary>
    [Fact]
    public async Task Writeback_type_incompressible_does_not_take_a_huge_page_while_it_is_being_recompressed()
    {
        const int pages = 48;
        long writtenBack = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int round = 0; writtenBack == 0 && clock.Elapsed < TimeSpan.FromSeconds(3); round++)
        {
            using var device = new ZramDevice(new ZramDeviceOptions
            {
                Name = "zram0",
                DiskSize = 1L << 20,
                RecompressAlgorithm = "zstd:19",
                BackingFile = Path.Combine(_dir, $"zram0-{round}.wb"),
            }, NullLoggerFactory.Instance);
            var random = new Random(round);
            for (int i = 0; i < pages; i++)
            {
                Assert.Equal(NbdError.None, device.Write((long)i * Page, Device.Recompression.RecompressionTests.NibblePage(random), fua: false));
            }

            Assert.Equal(pages, device.GetStats().HugePages);
            Task<RecompressionResult> recompress = Task.Run(() => device.Recompress(SlotSelection.Huge));
            while (!recompress.IsCompleted)
            {
                writtenBack += device.Writeback(SlotSelection.Incompressible).WrittenBack;
            }

            RecompressionResult result = await recompress;
            Assert.True(result.Recompressed + writtenBack == pages || writtenBack > 0, $"precondition: zstd:19 shrinks every page: {result}");
        }

        Assert.True(writtenBack == 0,
            $"writeback type=incompressible, run while recompress type=huge went, wrote back {writtenBack} huge pages that zstd halves (none is "
            + "incompressible): a slot being recompressed is Huge | Recompressed from RecompressSlot's first lock to its second, "
            + "which SlotSelection.Incompressible takes for \"recompression tried and could not shrink it\"");
    }

    /// <summary>
    /// FAILS on the current code. `zramd idle NAME` then `zramd writeback NAME type=idle` (the kernel's
    /// "echo all &gt; idle; echo idle &gt; writeback") on a device with both a recompress-algorithm (background
    /// recompressor) and a writeback-file: MarkIdle kicks the background Recompressor, whose RecompressSlice runs
    /// RecompressSlot on every idle slot, and RecompressSlot now clears the idle age of each slot it tries. Between the
    /// two commands the daemon itself takes away the idle marks the user just set, so the writeback writes back
    /// whatever the background has not reached yet: here nothing. The kernel has no background recompression; its IDLE
    /// flag goes only on access or on a recompress the user asked for.
    /// </summary>
    [Fact]
    public void The_background_recompressor_does_not_take_the_idle_marks_a_user_set_for_writeback()
    {
        const int pages = 16;
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 1L << 20,
            RecompressAlgorithm = "zstd:3",
            RecompressIdleAfter = TimeSpan.FromHours(1), // the background recompressor runs, aging every 30 min
            RecompressCpuPercent = 100,
            BackingFile = Path.Combine(_dir, "zram0.wb"),
        }, NullLoggerFactory.Instance);
        for (int i = 0; i < pages; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        Assert.Equal(pages, device.MarkIdle()); // `zramd idle zram0`: kicks the background recompressor

        // The background's pass over the idle slots (each slot it tried carries the Recompressed mark).
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (waited.Elapsed < TimeSpan.FromSeconds(3)
            && Enumerable.Range(0, pages).Any(i => (device.Slots.PeekInfo(i) & (SlotInfo.Recompressed | SlotInfo.WrittenBack)) == 0))
        {
            Thread.Sleep(10);
        }

        // And the end of that pass: a slot is marked at its first look, and the pass may still be compressing the last
        // one, whose smaller object then wins over a writeback batch's mark (CI on 2026-12-07 wrote back 15). A run
        // asked for waits for the background's turn; of huge slots, it has none here to touch.
        Assert.Equal(0, device.Recompress(SlotSelection.Huge).Recompressed);

        WritebackResult written = device.Writeback(SlotSelection.Idle); // `zramd writeback zram0 type=idle`

        Assert.True(written.WrittenBack == pages,
            $"`zramd idle` marked {pages} pages idle, and `zramd writeback type=idle` then wrote back {written.WrittenBack}: the background "
            + "recompressor, kicked by the idle verb, cleared the idle age of every slot it tried (RecompressSlot), so the user's "
            + "idle writeback depends on how far the background got; the idle marks the user set should stay until the pages are accessed");
    }

    /// <summary>
    /// FAILS on the current code. RecompressSlot sets the slot's idle age to 0, as a read or write does. The kernel
    /// clears only ZRAM_IDLE: the entry's ac_time (what `echo SECONDS &gt; idle` ages by) is kept when the recompression
    /// keeps the old object, and set to 0 (the oldest there is) when it replaces it (zram_free_page: "ac_time = 0"). In
    /// zramd the 2-bit age is the only access time, so a page recompressed because it was the coldest becomes as young
    /// as one just written, and the background watermark writeback ("idle first, then huge, then the others by idle age
    /// (the least recently touched first)", WritebackToWatermark) writes back pages touched since (age 1) before the
    /// cold recompressed ones (age 0). Here: 64 cold pages (idle, recompressed by type=idle) and 64 pages written
    /// after them (age 1); at the watermark the writeback takes the warm ones and none of the cold.
    /// </summary>
    [Fact]
    public void Recompression_does_not_make_the_coldest_pages_the_last_the_watermark_writeback_takes()
    {
        const int cold = 64, warm = 64;
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 1L << 20,
            RecompressAlgorithm = "zstd:3",
            BackingFile = Path.Combine(_dir, "zram0.wb"),
            WritebackWatermarkPercent = 100,
        }, NullLoggerFactory.Instance);
        for (int i = 0; i < cold; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        for (int pass = 0; pass < 3; pass++)
        {
            device.AgeSlots(markAll: false); // the recompressor's clock: cold pages reach the idle age
        }

        for (int i = cold; i < cold + warm; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        device.AgeSlots(markAll: false); // warm pages: age 1; cold ones stay idle
        RecompressionResult recompressed = device.Recompress(SlotSelection.Idle);
        Assert.True(recompressed.Candidates == cold, $"precondition: recompress type=idle tries the {cold} cold pages: {recompressed}");

        // At the watermark, with a little to free: 100 % of a limit just under what is used, down to 90 % of it.
        long used = device.GetStats().MemUsedTotal;
        long limit = used / Page * Page;
        Assert.True(limit >= device.MinimumMemLimit, $"precondition: the limit {limit} must be at least {device.MinimumMemLimit}");
        device.SetMemLimit(limit);
        long written = device.WritebackToWatermark();

        int coldWritten = Enumerable.Range(0, cold).Count(i => SlotInfo.IsWrittenBack(device.Slots.PeekInfo(i)));
        int warmWritten = Enumerable.Range(cold, warm).Count(i => SlotInfo.IsWrittenBack(device.Slots.PeekInfo(i)));
        Assert.True(coldWritten + warmWritten > 0 && (warmWritten == 0 || coldWritten == cold),
            $"the watermark writeback (this call: {written} pages, and the device's own background tick) wrote back {coldWritten} of the {cold} cold ones (untouched for 4 aging passes, "
            + $"then recompressed) and {warmWritten} of the {warm} written since (age 1); recompression reset the cold pages' age to 0, "
            + "as if just written, where the kernel keeps their ac_time (or sets it to 0, the oldest), so the least recently touched "
            + "should go first");
    }
}
