using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Recompression;
using ZramDaemon.Device.Writeback;
using ZramDaemon.Tests.Device;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (kernel semantics): which pages a bounded recompression or writeback takes. Since Linux 6.12 ("zram: rework
/// recompress target selection strategy", "zram: rework writeback target selection strategy") the kernel first
/// collects the candidates into buckets by object size (place_pp_slot: obj_size / PP_BUCKET_SIZE_RANGE, 64 bytes) and
/// then works from the largest bucket down (select_pp_slot: "The higher the bucket id the more optimal slot
/// post-processing is"), so a run cut short by max_pages or by the writeback_limit budget spends it on the largest
/// objects. zramd walks the slot table in index order.
/// </summary>
public sealed class RevKPostProcessingOrderTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private const int Small = 8, Large = 8;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-revk-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Slots 0..7: text pages (small lz4 objects zstd shrinks further); slots 8..15: random nibbles, huge with
    /// lz4 (4096 bytes) and about 2.1 KiB with zstd.</summary>
    private static void WriteSmallThenLarge(ZramDevice device)
    {
        var random = new Random(9);
        for (int i = 0; i < Small + Large; i++)
        {
            byte[] page = i < Small ? DevicePages.TextPage(i) : Device.Recompression.RecompressionTests.NibblePage(random);
            Assert.Equal(NbdError.None, device.Write((long)i * Page, page, fua: false));
        }

        Assert.Equal(Large, device.GetStats().HugePages);
    }

    /// <summary>
    /// FAILS on the current code. `recompress type=... max_pages=8` on a device holding 8 small and 8 huge
    /// candidates: the kernel's recompress_store (6.12+) takes the candidates by select_pp_slot, largest bucket first, so
    /// the 8 pages it tries are the huge ones (bucket 64), which zstd shrinks: huge_pages 8 -> 0, about 15 KiB saved.
    /// zramd's Recompress tries slots 0..7 in index order, the small text objects, and leaves every huge page as it
    /// is: the same budget saves a fraction of what it saves with the kernel. README: max_pages "as the kernel counts".
    /// </summary>
    [Fact]
    public void Recompress_with_max_pages_takes_the_largest_objects_first_as_the_kernel_does()
    {
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 1L << 20,
            RecompressAlgorithm = "zstd:3",
        }, NullLoggerFactory.Instance);
        WriteSmallThenLarge(device);

        RecompressionResult result = device.Recompress(SlotSelection.All, maxPages: Large);

        ZramStats stats = device.GetStats();
        Assert.True(stats.HugePages == 0,
            $"recompress max_pages={Large} tried {result.Candidates} pages, recompressed {result.Recompressed}, saved {result.BytesSaved} bytes, "
            + $"and left huge_pages at {stats.HugePages} of {Large}; the kernel's recompress_store picks candidates largest-bucket first "
            + "(select_pp_slot) and spends the budget on the 8 huge 4096-byte objects");
    }

    /// <summary>
    /// FAILS on the current code. `writeback type=idle` under a writeback budget of 4 pages on a device holding 8 small
    /// idle objects and 8 huge idle ones: the kernel's writeback_store (6.12+) writes back candidates largest bucket
    /// first (scan_slots_for_writeback into pp buckets, select_pp_slot), so its 4 pages of writeback_limit go to 4 huge
    /// pages and free 4 whole pool pages. zramd's Writeback walks the slots in index order and spends the budget
    /// (its daily writeback_limit, documented as bytes a day, 4096 per page written) on slots 0..3, small text objects
    /// that together free less than one pool page: the flash writes the limit rations buy a fraction of the memory.
    /// </summary>
    [Fact]
    public void Writeback_under_a_budget_takes_the_largest_objects_first_as_the_kernel_does()
    {
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 1L << 20,
            BackingFile = Path.Combine(_dir, "zram0.wb"),
            WritebackLimitPerDay = 4 * Page,
        }, NullLoggerFactory.Instance);
        WriteSmallThenLarge(device);
        device.MarkIdle();

        WritebackResult result = device.Writeback(SlotSelection.Idle);

        ZramStats stats = device.GetStats();
        Assert.True(result.WrittenBack == 4 && stats.HugePages == Large - 4,
            $"writeback type=idle with a budget of 4 pages wrote back {result.WrittenBack} (stopped by {result.StoppedBy}) and left huge_pages at "
            + $"{stats.HugePages} of {Large}; the kernel's writeback_store writes back largest-bucket first (select_pp_slot), "
            + "so its 4 pages of writeback_limit take 4 of the huge pages");
    }
}
