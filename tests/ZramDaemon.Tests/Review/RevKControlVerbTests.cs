using Microsoft.Extensions.Logging.Abstractions;
using Nbd;
using Nbd.Devices;
using ZramDaemon.Control;
using ZramDaemon.Device;
using ZramDaemon.Hosting;
using ZramDaemon.Tests.Device;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (kernel semantics): control verbs given the arguments a kernel zram user writes to sysfs, parsed by
/// <see cref="ControlRequest"/> and answered by the daemon's own <see cref="DeviceRegistry"/>, against what the
/// kernel's attribute does with the same arguments.
/// </summary>
public sealed class RevKControlVerbTests
{
    private const int Page = ZramDevice.PageSize;

    private static ZramDevice Create(string? recompress = "zstd:3") => RevFControlVerbTests.Create(recompress);

    private static Task<ControlReply> SendAsync(ZramDevice device, string line) => RevFControlVerbTests.SendAsync(device, line);

    private static void WriteHugeShrinkablePages(ZramDevice device, int count) => RevFControlVerbTests.WriteHugeShrinkablePages(device, count);

    /// <summary>
    /// FAILS on the current code. In the kernel, max_pages=0 recompresses nothing: recompress_store starts from
    /// num_recomp_pages = ULLONG_MAX, max_pages= replaces it (kstrtoull), and its loop over the candidates begins with
    /// "if (!num_recomp_pages) break;" (drivers/block/zram/zram_drv.c, recompress_store; recompress_slot counts it down
    /// per page tried). zramd reads max_pages=0 as "no limit" (ControlRequest, DeviceRegistry.MaxPages, and
    /// ZramDevice.Recompress's "maxPages == 0 ||"), so a script that computes its page budget and reaches 0 (or passes
    /// 0 meaning "none this time") recompresses every candidate for up to 5 s instead of none. The help text says
    /// "0: no limit" but the verb is sold as "like zram's recompress", and max_pages "as the kernel counts".
    /// </summary>
    [Fact]
    public async Task Recompress_with_max_pages_0_recompresses_nothing_as_the_kernel_does()
    {
        using ZramDevice device = Create();
        for (int i = 0; i < 16; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        long comprBefore = device.GetStats().ComprDataSize;

        ControlReply reply = await SendAsync(device, "recompress zram0 max_pages=0");

        ZramStats stats = device.GetStats();
        Assert.True(reply.Ok && stats.RecompressedPages == 0 && stats.ComprDataSize == comprBefore,
            $"`recompress zram0 max_pages=0` answered {(reply.Ok ? reply.Text : reply.Error)}; recompressed_pages {stats.RecompressedPages}, "
            + $"compr_data_size {comprBefore} -> {stats.ComprDataSize}; the kernel's recompress_store breaks out of its loop at once when "
            + "max_pages is 0 (\"if (!num_recomp_pages) break;\") and recompresses nothing");
    }

    /// <summary>
    /// FAILS on the current code. The kernel refuses a threshold at or above its huge class size: recompress_store
    /// ends its parsing with "if (threshold >= huge_class_size) return -EINVAL;" (drivers/block/zram/zram_drv.c), so
    /// `echo "threshold=4000" > recompress` changes nothing (huge_class_size is zs_huge_class_size(), 3264 with 4-page
    /// zspages, 3632 with the 8-page chains of Linux 6.3+). zramd takes any threshold from 1 to 4095
    /// (ControlRequest.TryParse: "is 0 or &gt;= 4096"), 4000 included, whatever its pool's huge class size (3837),
    /// and the run then recompresses huge pages: objects of 4000 bytes or more are the huge ones only. A command the
    /// kernel rejects changes the stored pages (huge_pages, compr_data_size) instead of failing.
    /// </summary>
    [Fact]
    public async Task Recompress_refuses_a_threshold_at_or_above_the_huge_class_size_as_the_kernel_does()
    {
        using ZramDevice device = Create();
        WriteHugeShrinkablePages(device, 8);

        ControlReply reply = await SendAsync(device, "recompress zram0 threshold=4000");

        ZramStats stats = device.GetStats();
        Assert.True(!reply.Ok && stats.HugePages == 8 && stats.RecompressedPages == 0,
            $"`recompress zram0 threshold=4000` answered {(reply.Ok ? "ok: " + reply.Text : "error: " + reply.Error)}; huge_pages 8 -> {stats.HugePages}, "
            + $"recompressed_pages {stats.RecompressedPages}; the kernel's recompress_store returns -EINVAL for threshold >= huge_class_size "
            + "and recompresses nothing");
    }

    /// <summary>
    /// FAILS on the current code (minor: refused, not silently different). The kernel takes threshold=0 as no
    /// threshold: recompress_store parses it with kstrtouint into its default of 0 ("u32 threshold = 0"), which
    /// recompress_slot reads as none ("if (comp_len_old &lt; threshold)" never true, "threshold &amp;&amp; ..." false). zramd
    /// refuses it ("threshold is a size in bytes from 1 to 4095"), so a script that passes threshold=0 for "any size",
    /// valid with the kernel, fails against zramd.
    /// </summary>
    [Fact]
    public async Task Recompress_takes_threshold_0_as_no_threshold_as_the_kernel_does()
    {
        using ZramDevice device = Create();
        WriteHugeShrinkablePages(device, 4);

        ControlReply reply = await SendAsync(device, "recompress zram0 threshold=0");

        Assert.True(reply.Ok && device.GetStats().RecompressedPages == 4,
            $"`recompress zram0 threshold=0` answered {(reply.Ok ? "ok: " + reply.Text : "error: " + reply.Error)}, "
            + $"recompressed_pages {device.GetStats().RecompressedPages} of 4; the kernel's recompress_store accepts threshold=0 "
            + "(its default, meaning no threshold) and recompresses all 4");
    }

    /// <summary>
    /// FAILS on the current code (minor, a stats number). The kernel keeps mem_limit in pages, rounded up:
    /// mem_limit_store does "zram->limit_pages = PAGE_ALIGN(limit) &gt;&gt; PAGE_SHIFT" after memparse, and mm_stat's
    /// fourth field prints "zram->limit_pages &lt;&lt; PAGE_SHIFT" (drivers/block/zram/zram_drv.c, mem_limit_store,
    /// mm_stat_show); so `echo 1000001 &gt; mem_limit` reads back as 1003520 in mm_stat. zramd keeps and prints the
    /// bytes as given (DeviceSetting parses with SizeParser, documented as "the way zram's ... mem_limit attributes do
    /// (memparse)"), and `zramd stats` promises the kernel's mm_stat line: a monitoring script comparing the limit
    /// it set, page-aligned as the kernel reports it, with mm_stat sees another number (and zramd enforces the
    /// unrounded limit, up to 4095 bytes lower).
    /// </summary>
    [Fact]
    public async Task Mem_limit_is_page_aligned_in_mm_stat_as_the_kernel_stores_it()
    {
        using ZramDevice device = Create(recompress: null);
        const long requested = 1_000_001;
        const long aligned = (requested + Page - 1) / Page * Page; // 1003520
        Assert.True(device.MinimumMemLimit < requested, $"precondition: the device's minimum limit is {device.MinimumMemLimit}");

        ControlReply reply = await SendAsync(device, $"set zram0 mem_limit={requested}");
        Assert.True(reply.Ok, reply.Error);

        string mmStat = device.GetStats().FormatMmStat();
        long shown = long.Parse(mmStat.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(shown == aligned,
            $"after `set zram0 mem_limit={requested}` mm_stat is '{mmStat}', mem_limit {shown}; the kernel's mem_limit_store rounds "
            + $"the limit up to whole pages (PAGE_ALIGN) and mm_stat prints limit_pages << PAGE_SHIFT = {aligned}");
    }

    /// <summary>The kernel's algo= and priority= choose among its recompression algorithms: a zramd device has one,
    /// priority 1, named as the kernel names it (zstd) or as configured (zstd:3); others are refused, as EINVAL.</summary>
    [Theory]
    [InlineData("algo=zstd", true)]
    [InlineData("algo=zstd:3", true)]
    [InlineData("priority=1", true)]
    [InlineData("algo=lz4hc", false)]
    [InlineData("algo=zstd:9", false)]
    [InlineData("priority=2", false)]
    [InlineData("priority=0", true)] // the kernel's recompress_store takes 0 (the primary) as 1
    [InlineData("priority=1 algo=zstd", true)]
    [InlineData("algo=zstd priority=2", false)]
    public async Task Recompress_takes_the_kernels_algo_or_priority_naming_its_one_algorithm(string choice, bool taken)
    {
        using ZramDevice device = Create();
        WriteHugeShrinkablePages(device, 4);

        ControlReply reply = await SendAsync(device, $"recompress zram0 type=huge {choice}");

        Assert.True(reply.Ok == taken, $"`recompress zram0 type=huge {choice}` answered {(reply.Ok ? "ok: " + reply.Text : "error: " + reply.Error)}");
        Assert.Equal(taken ? 4 : 0, device.GetStats().RecompressedPages);
    }
}
