using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Recompression;

namespace ZramDaemon.Tests.Device.Recompression;

/// <summary>
/// Recompression on a device full at its limit whose pool has just filled its last arena (16384 pages, 64 MiB): the
/// first smaller object needs a page of a new arena, and with it that arena's 64 KiB page map in mem_used_total, far
/// more than the two pages of headroom recompression had past mem_limit. Writes that need a new page get ENOSPC there,
/// so a device filled until ENOSPC stops at an arena's end whenever its limit falls within ~68 KiB past it.
/// </summary>
public class RecompressAtArenaBoundaryTests
{
    private const int Page = ZramDevice.PageSize;
    private const int ArenaPages = 16384;

    [Fact]
    public void Recompression_makes_room_when_the_full_pool_ends_at_an_arena_boundary()
    {
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0", DiskSize = (ArenaPages + 1024L) * Page, RecompressAlgorithm = "zstd:3", CompactThresholdPages = 0,
        }, NullLoggerFactory.Instance);
        var random = new Random(9);
        for (int i = 0; i < ArenaPages; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, RecompressionTests.NibblePage(random), fua: false));
        }

        ZramStats full = device.GetStats();
        Assert.Equal(ArenaPages, full.HugePages);

        // A limit 32 KiB above what is used: one more page (and its arena's page map) does not fit.
        device.SetMemLimit(full.MemUsedTotal + (8 * Page));
        Assert.Equal(NbdError.NoSpace, device.Write((long)ArenaPages * Page, RecompressionTests.NibblePage(random), fua: false));

        RecompressionResult result = device.Recompress(SlotSelection.Huge);
        ZramStats after = device.GetStats();
        Assert.True(result.Recompressed > ArenaPages / 2,
            $"{ArenaPages} huge pages at the limit ({full.MemUsedTotal} + 32 KiB): recompressed {result.Recompressed} of {result.Candidates}, stopped by the limit: {result.StoppedByMemLimit}; mem_used_total {after.MemUsedTotal}");
    }
}
