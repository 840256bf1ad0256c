using Microsoft.Extensions.Logging.Abstractions;
using ZramDaemon.Device;
using ZramDaemon.Device.Writeback;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>
/// The daily writeback budget and writeback_today count pages written to the backing file (the kernel takes from
/// bd_wb_limit only after the write succeeded). A writeback whose write fails (here: the filesystem holding the sparse
/// backing file is full, ENOSPC) writes nothing and must spend nothing. The backing file lives on a 64 KiB tmpfs,
/// which needs root to mount (the suite runs as root: scripts/test.sh).
/// </summary>
public sealed class WritebackBudgetOnFailureTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly SmallTmpfs _tmpfs = new("zramd-wbfail-");

    public void Dispose() => _tmpfs.Dispose();

    private ZramDevice Create(long dailyLimit) => new(new ZramDeviceOptions
    {
        Name = "zram0",
        DiskSize = 1L << 20,
        BackingFile = Path.Combine(_tmpfs.Dir, "zram0.wb"),
        WritebackLimitPerDay = dailyLimit,
    }, NullLoggerFactory.Instance);

    /// <summary>64 pages that compress to about 1 KiB each (so none is huge) and no two alike.</summary>
    private static void WritePages(ZramDevice device)
    {
        var random = new Random(1);
        for (int i = 0; i < 64; i++)
        {
            var page = new byte[Page];
            var pattern = new byte[128];
            random.NextBytes(pattern);
            for (int k = 0; k < 8; k++)
            {
                pattern.CopyTo(page, k * 128);
            }

            Assert.Equal(Nbd.Devices.NbdError.None, device.Write((long)i * Page, page, fua: false));
        }
    }

    [Fact]
    public void Writeback_today_counts_only_the_pages_written_not_the_failed_writes()
    {
        _tmpfs.AssertMounted();

        using ZramDevice device = Create(dailyLimit: 0);
        WritePages(device);

        // 64 KiB of tmpfs hold 16 blocks: each run writes what fits, then fails one write (ENOSPC) and stops.
        for (int run = 0; run < 4; run++)
        {
            device.Writeback(SlotSelection.All);
        }

        ZramStats stats = device.GetStats();
        Assert.Equal(16, stats.BdWrites);
        Assert.Equal(stats.BdWrites * Page, stats.WritebackToday); // 16 pages written; 20 counted
    }

    [Fact]
    public void Failed_writes_do_not_spend_the_daily_limit()
    {
        _tmpfs.AssertMounted();

        // 20 pages a day: 16 fit in the file system, the next 4 fail with ENOSPC.
        using ZramDevice device = Create(dailyLimit: 20 * Page);
        WritePages(device);
        for (int run = 0; run < 5; run++)
        {
            device.Writeback(SlotSelection.All);
        }

        Assert.Equal(16, device.GetStats().BdWrites);

        // The 16 pages written back are trimmed: their blocks are punched out and the tmpfs has room again. Today
        // wrote 16 pages of the 20 allowed, so 4 more may go.
        Assert.Equal(Nbd.Devices.NbdError.None, device.Trim(0, 16L * Page));
        WritebackResult result = device.Writeback(SlotSelection.All);
        Assert.Equal(4, result.WrittenBack); // 0: the failed writes spent the rest of the day's budget
    }
}
