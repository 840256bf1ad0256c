using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Recompression;
using ZramDaemon.Tests.Device.Recompression;

namespace ZramDaemon.Tests.Device.Review;

/// <summary>
/// Review finding: recompression cannot run on a device that sits at its memory limit, the state a device that filled
/// up stays in (writes get ENOSPC there) and the one recompression is for. RecompressSlot allocates the smaller object
/// before it frees the old one and requires it to fit under mem_limit by itself (TryAllocateForRecompression); when
/// the smaller class has no freed slot, that needs a new pool page, which is refused, and the whole pass stops at
/// the first such slot (RecompressOutcome.NoSpace), as does the background recompressor until the next aging, which
/// meets the same refusal. A device full of huge pages that zstd would halve recompresses nothing: 0 of 456 here, the
/// run stopped by the limit at the first candidate, mem_used_total unchanged. The kernel's recompress_slot calls
/// zs_malloc without looking at limit_pages, so it makes room. (With one page of headroom the pass goes through: each
/// page recompressed frees a 4 KiB huge object for the next.)
/// </summary>
public class RecompressAtLimitTests
{
    private const int Page = ZramDevice.PageSize;

    [Fact]
    [Trait("Category", "ReviewFinding")]
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
        Assert.True(result.Recompressed > stored / 2,
            $"{stored} huge pages at the limit ({full.MemUsedTotal} of {limit}): recompressed {result.Recompressed} of {result.Candidates}, stopped by the limit: {result.StoppedByMemLimit}; mem_used_total {after.MemUsedTotal}");
    }
}
