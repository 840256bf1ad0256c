using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Compression;
using ZramDaemon.Device;
using ZramDaemon.Device.Recompression;
using ZramDaemon.Device.Writeback;
using ZramDaemon.Tests.Device;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (RevG) of the RevF fixes to post-processing (commit 69335bd): SlotInfo.Incompressible, set by
/// MarkIncompressible only when a recompression without threshold found a huge page it could not shrink and the slot
/// still holds the same object under the same handle. A slot marked Recompressed without it is neither tried again
/// (IsRecompressCandidate wants Recompressed clear) nor taken by writeback type=incompressible: the two tests below
/// reach that state on paths the fix did not think of.
/// </summary>
public sealed class RevGPostProcessingTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-revg-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// FAILS on the current code. RecompressSlot marks the slot Recompressed under its lock, compresses with it released,
    /// and on "not smaller" calls MarkIncompressible, which sets the bit only if the slot's handle is still the one
    /// read (<c>_slots.Value(index) == value</c>). A compaction's handle shrink between the two (the background
    /// compactor's, any time) moves the same object to another handle: the bit is not set, and the Recompressed mark
    /// stays (the not-smaller path, unlike the smaller one, does not take it away when the handle moved). The slot is
    /// then stuck: `recompress` skips it for ever (Recompressed) and `writeback type=incompressible` never takes it
    /// (no Incompressible), though it is exactly a huge page recompression could not shrink. docs/device.md says of
    /// this race "the mark goes, so a later pass tries again" (RecompressionTests.
    /// A_slot_whose_handle_moved_while_it_was_recompressed_is_tried_again covers only a page zstd shrinks). The test
    /// pins the recompression between its two lock holds by holding the recompression compressor's one stream, as that
    /// test does, and moves the handle with device.Compact().
    /// </summary>
    [Fact]
    public async Task A_huge_page_whose_handle_moved_while_recompression_found_it_incompressible_is_not_stuck()
    {
        const int Slots = 10_240; // enough handle cells freed for a shrink (16 pages of cells past the mark)
        const int Target = Slots - 1;
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = (long)Slots * Page,
            RecompressAlgorithm = "zstd:3",
            BackingFile = Path.Combine(_dir, "zram0.wb"),
            CompactInterval = TimeSpan.FromHours(1), // only the test's compaction moves handles
        }, NullLoggerFactory.Instance);
        byte[] text = DevicePages.TextPage(1);
        for (int i = 0; i < Target; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, text, fua: false));
        }

        // Random bytes: huge with lz4, and zstd cannot shrink them either.
        var random = new byte[Page];
        new Random(Target).NextBytes(random);
        Assert.Equal(NbdError.None, device.Write((long)Target * Page, random, fua: false));
        Assert.Equal(NbdError.None, device.Trim(0, (long)Target * Page));
        Assert.True((device.Slots.PeekInfo(Target) & SlotInfo.Huge) != 0, "precondition: the random page is huge");
        Assert.Equal(RecompressOutcome.NotSmaller, await Device.Recompression.RecompressionTests.RecompressWhileCompactionMovesTheHandle(device, Target));

        uint info = device.Slots.PeekInfo(Target);
        long triedAgain = device.Recompress(SlotSelection.Huge).Candidates;
        uint infoAfter = device.Slots.PeekInfo(Target);
        WritebackResult written = device.Writeback(SlotSelection.Incompressible);
        Assert.True(triedAgain == 1 || written.WrittenBack == 1,
            $"a huge page zstd cannot shrink, whose handle a compaction moved while it was recompressed, ended with info 0x{info:x8} "
            + $"(Recompressed {(info & SlotInfo.Recompressed) != 0}, Incompressible {(info & SlotInfo.Incompressible) != 0}); a later "
            + $"`recompress type=huge` tried {triedAgain} pages (info then 0x{infoAfter:x8}) and `writeback type=incompressible` wrote back "
            + $"{written.WrittenBack}: expected one or the other (marked incompressible, or the Recompressed mark taken away so that a "
            + "later pass tries again, as on the smaller path); MarkIncompressible gives up on the moved handle and leaves the slot "
            + "marked Recompressed alone, neither retried nor incompressible");
    }

    /// <summary>
    /// FAILS on the current code. `recompress type=huge threshold=1000` on huge pages zstd brings to about 2.1 KiB keeps
    /// none (not below the threshold), and since 69335bd rightly does not mark them Incompressible. But it leaves them
    /// marked Recompressed ("the mark stays: not tried again until rewritten"), so a later `recompress type=huge` without
    /// a threshold skips them all and they stay huge for ever, neither recompressed nor taken by `writeback
    /// type=incompressible`. Linux 6.12's recompress_slot returns 0 for "Successful recompression but above threshold"
    /// without setting ZRAM_RECOMPRESSED (zram_set_priority) or ZRAM_INCOMPRESSIBLE, so scan_slots_for_recompress takes
    /// those pages again on the next run (and the later rework marks them INCOMPRESSIBLE instead): in neither kernel
    /// does a page end in zramd's state, dealt with but neither shrunk nor incompressible.
    /// </summary>
    [Fact]
    public void A_huge_page_a_threshold_left_is_recompressed_by_a_later_run_without_one()
    {
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 1L << 20,
            RecompressAlgorithm = "zstd:3",
        }, NullLoggerFactory.Instance);
        var random = new Random(3);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, Device.Recompression.RecompressionTests.NibblePage(random), fua: false));
        }

        Assert.Equal(4, device.GetStats().HugePages);
        RecompressionResult withThreshold = device.Recompress(SlotSelection.Huge, threshold: 1000);
        Assert.True(withThreshold.Candidates == 4 && withThreshold.Recompressed == 0, $"precondition: the threshold leaves the 4 huge pages: {withThreshold}");

        RecompressionResult without = device.Recompress(SlotSelection.Huge);

        Assert.True(without.Recompressed == 4,
            $"`recompress type=huge` after `recompress type=huge threshold=1000` tried {without.Candidates} and recompressed {without.Recompressed} "
            + $"of the 4 huge pages zstd halves (huge_pages now {device.GetStats().HugePages}); the threshold run left them marked Recompressed "
            + "though it kept nothing only because of the threshold: the kernel (6.12) sets no flag then and takes them again");
    }
}
