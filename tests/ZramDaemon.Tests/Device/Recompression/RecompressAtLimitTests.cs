using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Recompression;

namespace ZramDaemon.Tests.Device.Recompression;

/// <summary>
/// Recompression runs on a device that sits at its memory limit, the state a device that filled up stays in (writes
/// get ENOSPC there) and the one recompression is for. Found by review: RecompressSlot allocates the smaller object
/// before it frees the old one, and required it to fit under mem_limit by itself; when the smaller class had no freed
/// slot that needed a new pool page, which was refused, and the pass stopped at the first such slot: a device full of
/// huge pages that zstd would halve recompressed 0 of 456, mem_used_total unchanged. The kernel's recompress_slot calls
/// zs_malloc without looking at limit_pages; zramd allows two pages past the limit, and each page recompressed frees
/// a 4 KiB huge object for the next.
/// </summary>
public class RecompressAtLimitTests
{
    private const int Page = ZramDevice.PageSize;

    [Fact]
    public void Recompression_makes_room_on_a_device_full_at_its_limit()
    {
        const long limit = 2L << 20;
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0", DiskSize = 64L << 20, MemLimit = limit, RecompressAlgorithm = "zstd:3", CompactThresholdPages = 0,
        }, NullLoggerFactory.Instance);
        var random = new Random(9);
        int stored = 0;
        while (device.Write((long)stored * Page, RecompressionTests.NibblePage(random), fua: false) == NbdError.None)
        {
            stored++;
        }

        ZramStats full = device.GetStats();
        RecompressionResult result = device.Recompress(SlotSelection.Huge);
        ZramStats after = device.GetStats();
        Assert.True(after.MemUsedTotal <= limit + (2 * Page), $"mem_used_total {after.MemUsedTotal} is past the limit {limit} and its headroom");
        Assert.True(result.Recompressed > stored / 2,
            $"{stored} huge pages at the limit ({full.MemUsedTotal} of {limit}): recompressed {result.Recompressed} of {result.Candidates}, stopped by the limit: {result.StoppedByMemLimit}; mem_used_total {after.MemUsedTotal}");
    }
}
