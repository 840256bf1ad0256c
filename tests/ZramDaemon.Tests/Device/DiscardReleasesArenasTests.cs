using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>
/// A device filled and then discarded whole (swapoff, or fstrim of an emptied filesystem) gives back the pool's arenas
/// too, as the kernel's pool gives back every page: each 64 MiB arena ever mapped used to keep its 64 KiB owner map,
/// counted in mem_used_total, for the daemon's life.
/// </summary>
public class DiscardReleasesArenasTests
{
    [Fact]
    public void A_full_discard_and_a_compaction_bring_mem_used_total_back_to_one_arena()
    {
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = 256L << 20 }, NullLoggerFactory.Instance);
        long fresh = device.GetStats().MetadataBytes;
        var random = new Random(11);
        var page = new byte[ZramDevice.PageSize];

        // 200 MiB of incompressible pages (4 KiB objects each): four arenas.
        const int Pages = 50 * 1024;
        for (int i = 0; i < Pages; i++)
        {
            random.NextBytes(page);
            Assert.Equal(NbdError.None, device.Write((long)i * ZramDevice.PageSize, page, fua: false));
        }

        long full = device.GetStats().MetadataBytes;
        Assert.Equal(NbdError.None, device.Trim(0, device.Size));
        device.Compact();
        ZramStats after = device.GetStats();

        Assert.Equal(0, after.OrigDataSize);
        Assert.Equal(after.MetadataBytes, after.MemUsedTotal);
        Assert.True(after.MetadataBytes - fresh <= 128 * 1024,
            $"metadata {fresh} fresh, {full} full, {after.MetadataBytes} after discarding all and compacting: the arenas' owner maps stayed");

        // And the device still works, on a page whose arena was released.
        random.NextBytes(page);
        Assert.Equal(NbdError.None, device.Write(123L * ZramDevice.PageSize, page, fua: false));
        var back = new byte[ZramDevice.PageSize];
        Assert.Equal(NbdError.None, device.Read(123L * ZramDevice.PageSize, back));
        Assert.Equal(page, back);
    }
}
