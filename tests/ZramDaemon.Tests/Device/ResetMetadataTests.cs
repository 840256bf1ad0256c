using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>A reset gives back what the data grew besides the pool's pages, as the kernel's reset frees its pool.</summary>
public class ResetMetadataTests
{
    /// <summary>
    /// 64 MiB of mixed pages, then a reset. The handle cells, zspage descriptors and (with dedup) the index's arrays the
    /// data grew used to stay: 372 KB of metadata against 147 KB fresh (725 KB with dedup; a compaction after gave
    /// back only part, and nothing ever shrank the index). What stays now is what any used pool keeps (an arena's owner
    /// map), well under half of what the data added.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Reset_gives_back_the_metadata_the_data_grew(bool dedup)
    {
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = 64L << 20, Dedup = dedup }, NullLoggerFactory.Instance);
        long fresh = device.GetStats().MetadataBytes;
        var random = new Random(3);
        for (int i = 0; i < 16384; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * ZramDevice.PageSize, DevicePages.Mixed(random, ZramDevice.PageSize), fua: false));
        }

        long full = device.GetStats().MetadataBytes;
        device.Reset();
        ZramStats after = device.GetStats();
        Assert.Equal(after.MetadataBytes, after.MemUsedTotal);
        Assert.True(after.MetadataBytes - fresh <= (full - fresh) / 2,
            $"metadata {fresh} fresh, {full} with 64 MiB stored, {after.MetadataBytes} after the reset (dedup {dedup})");

        // Still a working device, dedup index included.
        byte[] page = DevicePages.TextPage(5);
        Assert.Equal(NbdError.None, device.Write(0, page, fua: false));
        Assert.Equal(NbdError.None, device.Write(ZramDevice.PageSize, page, fua: false));
        var back = new byte[ZramDevice.PageSize];
        Assert.Equal(NbdError.None, device.Read(ZramDevice.PageSize, back));
        Assert.Equal(page, back);
        Assert.Equal(dedup ? 1 : 0, device.GetStats().DedupPages);
    }
}
