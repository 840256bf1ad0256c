using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>
/// mem_used_max is the figure one sizes mem_limit by, and the kernel's is noted at every allocation, before the limit
/// is checked (update_used_max): a device that got ENOSPC at its limit has a mem_used_max at that limit. zramd's was
/// noted at each new peak of the pool's pages and at each read of the stats only; usage that rose through metadata
/// alone (a same-filled page whose value needs a pool word takes a handle cell and no pool page) was never noted when
/// no stats were read before it went again. Now it is noted at each limit check too.
/// </summary>
public class MemUsedMaxWithoutPagePeakTests
{
    private const int Page = ZramDevice.PageSize;

    [Fact]
    public void A_device_that_reached_its_limit_through_word_pages_has_a_mem_used_max_at_that_limit()
    {
        const long size = 256L << 20;
        const int pages = (int)(size / Page);
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = size, CompactThresholdPages = 0 },
            NullLoggerFactory.Instance);
        long limit = device.MinimumMemLimit + (64 << 10);
        device.SetMemLimit(limit);

        // Same-filled pages whose halves differ: a pool word each (8 bytes of handle cells), until ENOSPC.
        int written = 0;
        while (written < pages && device.Write((long)written * Page, DevicePages.SameFilled(0x0000_0001_0000_0000UL | (uint)written), fua: false) == NbdError.None)
        {
            written++;
        }

        Assert.True(written < pages, "the limit was never reached");
        long highest = device.MemUsedTotal; // at the limit: the last word did not fit
        Assert.Equal(NbdError.None, device.Trim(0, size));
        device.Compact();

        ZramStats stats = device.GetStats();
        Assert.True(stats.MemUsedMax >= highest,
            $"mem_used_max {stats.MemUsedMax} after {written} words filled the device to its limit {limit} (mem_used_total {highest} then, {stats.MemUsedTotal} now)");
    }
}
