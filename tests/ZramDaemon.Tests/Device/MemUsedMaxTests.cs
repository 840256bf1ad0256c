using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>
/// mem_used_max is the peak of mem_used_total, as the kernel's only rises until it is reset (update_used_max): the
/// figure one sizes mem_limit by. Found by review: it was the pool's peak pages plus the metadata of now, and metadata
/// shrinks (a discard then compaction gives back handle cells and zspage descriptors) and grows (word cells of
/// same-filled pages take no pool page) apart from the pages, so the "max" fell below a mem_used_total the device had
/// reported, and could rise above any it ever had.
/// </summary>
public class MemUsedMaxTests
{
    private const int Page = ZramDevice.PageSize;

    [Fact]
    public void Mem_used_max_never_falls_below_a_mem_used_total_already_reported()
    {
        const long size = 256L << 20;
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = size, CompactThresholdPages = 0 },
            NullLoggerFactory.Instance);
        var page = new byte[Page];
        for (long p = 0; p < size / Page; p++)
        {
            DevicePages.TextPage((int)(p % 256)).CopyTo(page, 0);
            BitConverter.TryWriteBytes(page.AsSpan(0, 8), p);
            Assert.Equal(NbdError.None, device.Write(p * Page, page, fua: false));
        }

        ZramStats full = device.GetStats();
        Assert.True(full.MemUsedMax >= full.MemUsedTotal);

        Assert.Equal(NbdError.None, device.Trim(0, size));
        device.Compact();
        ZramStats after = device.GetStats();
        Assert.True(after.MemUsedMax >= full.MemUsedTotal,
            $"mem_used_max {after.MemUsedMax} after a discard and compaction, below the mem_used_total {full.MemUsedTotal} reported before them (metadata {full.MetadataBytes} then, {after.MetadataBytes} now)");
    }

    [Fact]
    public void Mem_used_max_is_never_more_than_the_device_ever_used()
    {
        const long size = 64L << 20;
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = size, CompactThresholdPages = 0 },
            NullLoggerFactory.Instance);
        long highest = 0;
        var random = new Random(7);
        var page = new byte[Page];
        // Incompressible pages: the pool's pages at their peak.
        for (long p = 0; p < 4096; p++)
        {
            random.NextBytes(page);
            Assert.Equal(NbdError.None, device.Write(p * Page, page, fua: false));
            highest = Math.Max(highest, device.GetStats().MemUsedTotal);
        }

        // Then they go, and same-filled pages whose value needs a pool word (a handle cell each, no pool page) come.
        Assert.Equal(NbdError.None, device.Trim(0, 4096L * Page));
        device.Compact();
        highest = Math.Max(highest, device.GetStats().MemUsedTotal);
        for (long p = 0; p < size / Page; p++)
        {
            Assert.Equal(NbdError.None, device.Write(p * Page, DevicePages.SameFilled(0x0123456789abcdefUL + (ulong)p), fua: false));
            if ((p & 1023) == 0)
            {
                highest = Math.Max(highest, device.GetStats().MemUsedTotal);
            }
        }

        ZramStats now = device.GetStats();
        highest = Math.Max(highest, now.MemUsedTotal);
        Assert.True(now.MemUsedMax <= highest,
            $"mem_used_max {now.MemUsedMax}, more than the most mem_used_total ever was ({highest}; {now.MemUsedTotal} now, metadata {now.MetadataBytes})");
    }
}
