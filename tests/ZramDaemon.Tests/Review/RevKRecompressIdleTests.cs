using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Recompression;
using ZramDaemon.Device.Writeback;
using ZramDaemon.Tests.Device;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (kernel semantics): what a recompression does to a slot's idle mark, which the next post-processing step
/// (writeback type=idle) selects by.
/// </summary>
public sealed class RevKRecompressIdleTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-revk-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private ZramDevice Create()
        => new(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 1L << 20,
            RecompressAlgorithm = "zstd:3",
            BackingFile = Path.Combine(_dir, "zram0.wb"),
        }, NullLoggerFactory.Instance);

    /// <summary>
    /// FAILS on the current code. The kernel's recompress_slot clears ZRAM_IDLE on every slot it reads for
    /// recompression, whether the new object is kept or not: "We touched this entry so mark it as non-IDLE. This makes
    /// sure that we don't preserve IDLE flag and don't incorrectly pick this entry for different post-processing type
    /// (e.g. writeback)" (drivers/block/zram/zram_drv.c, recompress_slot; commit "zram: clear IDLE flag after
    /// recompression", Linux 6.12, a fix of 84b33bf78889 "zram: introduce recompress sysfs knob": writeback wrote back
    /// incompressible pages recompression had just tried, "prematurely"). zramd's RecompressSlot keeps the idle age
    /// ("Still idle: ... writeback takes idle slots after recompression", ZramDevice.cs; the mark of a NotSmaller slot
    /// keeps it too), so the usual sequence `zramd idle`, `zramd recompress NAME type=idle`, `zramd writeback NAME
    /// type=idle` writes back every page recompression tried, the ones it just shrank and the incompressible ones alike,
    /// where the kernel writes back none of them (only idle pages recompression did not read: below its threshold, same
    /// or already dealt with). README and docs/device.md say recompress works "like zram's recompress".
    /// </summary>
    [Fact]
    public void Recompression_clears_the_idle_mark_of_the_slots_it_tried_so_writeback_type_idle_skips_them()
    {
        using ZramDevice device = Create();
        const int text = 8, random = 8;
        var rng = new Random(7);
        for (int i = 0; i < text + random; i++)
        {
            byte[] page;
            if (i < text)
            {
                page = DevicePages.TextPage(i);
            }
            else
            {
                page = new byte[Page];
                rng.NextBytes(page); // huge with lz4, and zstd cannot shrink it: tried, not kept
            }

            Assert.Equal(NbdError.None, device.Write((long)i * Page, page, fua: false));
        }

        Assert.Equal(text + random, device.MarkIdle());
        RecompressionResult recompressed = device.Recompress(SlotSelection.Idle);
        Assert.True(recompressed.Candidates == text + random && recompressed.Recompressed >= 1,
            $"precondition: recompress type=idle should try all {text + random} idle pages and shrink some text ones: {recompressed}");

        WritebackResult written = device.Writeback(SlotSelection.Idle);

        Assert.True(written.WrittenBack == 0,
            $"writeback type=idle after recompress type=idle wrote back {written.WrittenBack} pages (bd_writes {device.GetStats().BdWrites}) "
            + $"of the {recompressed.Candidates} recompression tried ({recompressed.Recompressed} shrunk, the rest incompressible); "
            + "the kernel's recompress_slot clears ZRAM_IDLE on every slot it reads, so its writeback type=idle writes back none of them");
    }
}
