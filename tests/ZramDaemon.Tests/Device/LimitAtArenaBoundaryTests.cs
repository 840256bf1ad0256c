using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Tests.Device.Recompression;

namespace ZramDaemon.Tests.Device;

/// <summary>
/// A write refused at the limit when the pool's last arena is full: the kernel's zs_free gives back what the refused
/// zs_malloc took, so freeing a page makes room for a page again. zramd's refused write mapped the next arena, whose
/// 64 KiB page map stayed counted in mem_used_total, up to 64 KiB past the limit: then no write fitted until that much
/// more was freed (here 32 KiB past a limit set 32 KiB above usage; a page trimmed, a page written: ENOSPC). Now the
/// retracted run goes back to the new arena's fresh tail and an untouched arena's map is not counted
/// (PageSource.RetractRun).
/// </summary>
public class LimitAtArenaBoundaryTests
{
    private const int Page = ZramDevice.PageSize;
    private const int ArenaPages = 16384;

    [Fact]
    public void After_a_refused_write_at_an_arena_boundary_a_freed_page_makes_room_for_one()
    {
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = (ArenaPages + 1024L) * Page, CompactThresholdPages = 0 },
            NullLoggerFactory.Instance);
        var random = new Random(9);
        for (int i = 0; i < ArenaPages; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, RecompressionTests.NibblePage(random), fua: false));
        }

        long full = device.MemUsedTotal;
        long limit = full + (8 * Page);
        device.SetMemLimit(limit);
        Assert.Equal(NbdError.NoSpace, device.Write((long)ArenaPages * Page, RecompressionTests.NibblePage(random), fua: false));
        long afterRefusal = device.MemUsedTotal;

        // One page goes, one comes.
        Assert.Equal(NbdError.None, device.Trim(0, Page));
        device.FlushDeferredFrees();
        NbdError again = device.Write(0, RecompressionTests.NibblePage(random), fua: false);
        Assert.True(again == NbdError.None,
            $"{again}: mem_used_total {full} full, limit {limit}, {afterRefusal} after the refused write, {device.MemUsedTotal} now");
    }
}
