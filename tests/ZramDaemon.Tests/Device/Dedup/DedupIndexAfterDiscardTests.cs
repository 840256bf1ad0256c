using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device.Dedup;

/// <summary>
/// The dedup index's arrays (24 bytes an entry, doubled as they grow) go back once no entry is live, at the next
/// compaction, not only at a reset (<see cref="ZramDevice.Reset"/>, refused while a client is attached). Found by review:
/// a discard of the whole device (swapoff then blkdiscard, mkfs, swapon's own discard) frees
/// every entry, yet the arrays stayed at their peak, resident and counted in mem_used_total against mem_limit for the
/// life of the daemon, while the pool's own metadata (handle cells, zspage descriptors) went back.
/// </summary>
public class DedupIndexAfterDiscardTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Discarding_every_page_gives_back_the_metadata_the_data_grew(bool dedup)
    {
        const long size = 256L << 20;
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = size, Dedup = dedup, CompactThresholdPages = 0 },
            NullLoggerFactory.Instance);
        long fresh = device.GetStats().MetadataBytes;
        var page = new byte[ZramDevice.PageSize];
        for (long p = 0; p < size / ZramDevice.PageSize; p++)
        {
            // Distinct text pages: each one an entry of the index.
            DevicePages.TextPage((int)(p % 256)).CopyTo(page, 0);
            BitConverter.TryWriteBytes(page.AsSpan(0, 8), p);
            Assert.Equal(NbdError.None, device.Write(p * ZramDevice.PageSize, page, fua: false));
        }

        long full = device.GetStats().MetadataBytes;
        Assert.Equal(NbdError.None, device.Trim(0, size));
        device.FlushDeferredFrees();
        device.Compact();
        ZramStats after = device.GetStats();
        Assert.Equal(0, after.OrigDataSize);
        // Without dedup: 540,672 fresh, 1,191,876 full, 614,384 after. With dedup: 565,248 fresh, 2,764,740 full and
        // 2,187,248 after (the 65,536-entry arrays, 1.6 MB, stay).
        Assert.True(after.MetadataBytes - fresh <= (full - fresh) / 2,
            $"metadata {fresh} fresh, {full} with {size >> 20} MiB stored, {after.MetadataBytes} after discarding it all and compacting (dedup {dedup})");
    }
}
