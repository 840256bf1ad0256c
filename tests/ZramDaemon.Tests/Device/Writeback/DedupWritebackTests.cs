using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>Writeback of deduplicated slots: a slot leaves the dedup index only when it is written back.</summary>
public sealed class DedupWritebackTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-dedupwb-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] DistinctPage(int i)
    {
        byte[] page = (byte[])DevicePages.TextPage(i).Clone();
        BitConverter.GetBytes(i).CopyTo(page, 0);
        return page;
    }

    /// <summary>
    /// The day's budget lets two pages through; the third slot's writeback is refused. It used to take the slot's
    /// object out of the index first (OwnObject) and then find no budget, so that a later write of the same bytes
    /// stored a second copy instead of sharing it.
    /// </summary>
    [Fact]
    public void A_deduplicated_slot_the_writeback_budget_refuses_stays_shared()
    {
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 64L * Page,
            BackingFile = Path.Combine(_dir, "zram0.wb"),
            WritebackLimitPerDay = 2 * Page,
            Dedup = true,
            CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DistinctPage(i), fua: false));
        }

        Assert.Equal(2, device.Writeback(SlotSelection.All).WrittenBack);
        long shared = device.GetStats().DedupPages;

        // The two the budget refused (the largest objects go first) are still in the pool: the same bytes written
        // elsewhere share their entries, and only theirs.
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(NbdError.None, device.Write((10L + i) * Page, DistinctPage(i), fua: false));
        }

        Assert.Equal(shared + 2, device.GetStats().DedupPages);

        var back = new byte[Page];
        foreach ((int block, int content) in new[] { (0, 0), (1, 1), (2, 2), (3, 3), (10, 0), (11, 1), (12, 2), (13, 3) })
        {
            Assert.Equal(NbdError.None, device.Read((long)block * Page, back));
            Assert.Equal(DistinctPage(content), back);
        }
    }
}
