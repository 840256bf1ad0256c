using System.Reflection;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Compression;
using ZramDaemon.Device;
using ZramDaemon.Device.Recompression;
using ZramDaemon.Device.Writeback;
using ZramDaemon.Tests.Device.Writeback;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review B (batched writeback, 98a7269): recompression racing with a batch. RecompressSlot marks the slot
/// Recompressed under its lock, lets go of the lock to compress, then settles its verdict only if the slot's info is
/// still what it marked (SettleUnshrunk: a huge page that would not shrink becomes Incompressible). A batch that stages
/// the slot meanwhile adds WritebackPending to the info, so the verdict is dropped as if the slot had been rewritten;
/// when the batch's write then fails, SettleWritebackBatch only takes the pending mark off again, and the slot is left
/// Huge|Recompressed without Incompressible for good: recompression never tries it again (Recompressed means dealt
/// with until rewritten) and `writeback incompressible` never selects it. Before the batching the writeback held the
/// slot lock over its write, so a failed write left the info as recompression marked it and SettleUnshrunk applied.
/// The control slot, recompressed with no batch in between, is marked.
/// Found by listing every "info still the same?" comparison (SettleUnshrunk, the recompression swap) against the new
/// bit. Made deterministic by holding the secondary compressor's only stream (reflection on _secondary), so
/// RecompressSlot waits between its two lock sections; the writes fail at once with ENOSPC on a full 64 KiB tmpfs.
/// </summary>
public sealed class RevBRecompressRaceTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly SmallTmpfs _tmpfs = new("zramd-revb-recomp-");

    public void Dispose() => _tmpfs.Dispose();

    /// <summary>
    /// FAILS on the current code. Seen: "writeback incompressible wrote 1 of the 2 huge pages recompression found
    /// incompressible: the one a failed batch staged during its recompression lost the mark".
    /// </summary>
    [Fact]
    public void A_failed_batch_staged_during_a_recompression_keeps_the_recompressions_verdict()
    {
        _tmpfs.AssertMounted();
        string filler = Path.Combine(_tmpfs.Dir, "filler");
        using (var fill = new FileStream(filler, FileMode.Create))
        {
            try
            {
                var chunk = new byte[Page];
                for (int i = 0; i < 1024; i++)
                {
                    fill.Write(chunk);
                    fill.Flush();
                }
            }
            catch (IOException)
            {
                // full
            }
        }

        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 16L * Page,
            BackingFile = Path.Combine(_tmpfs.Dir, "zram0.wb"),
            RecompressAlgorithm = "zstd:3",
            CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance);
        var page = new byte[Page];
        var random = new Random(11);
        for (int i = 0; i < 2; i++)
        {
            random.NextBytes(page);
            Assert.Equal(NbdError.None, device.Write((long)i * Page, page, fua: false));
        }

        // Control: slot 1 recompressed with nothing in between: incompressible.
        Assert.Equal(RecompressOutcome.NotSmaller, device.RecompressSlot(1, SlotSelection.Huge));

        var secondary = (Compressor)typeof(ZramDevice).GetField("_secondary", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(device)!;
        var slots = (SlotTable)typeof(ZramDevice).GetField("_slots", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(device)!;
        var batch = new WritebackBatch();
        RecompressOutcome seen = RecompressOutcome.Skipped;
        var recompressor = new Thread(() => seen = device.RecompressSlot(0, SlotSelection.Huge)) { IsBackground = true };
        CompressionStreamLease lease = secondary.Acquire();
        bool held = true;
        try
        {
            recompressor.Start();
            var wait = System.Diagnostics.Stopwatch.StartNew();
            while ((slots.PeekInfo(0) & SlotInfo.Recompressed) == 0 && wait.Elapsed < TimeSpan.FromSeconds(10))
            {
                Thread.Sleep(1);
            }

            Assert.True((slots.PeekInfo(0) & SlotInfo.Recompressed) != 0, "the recompression did not mark slot 0");
            Assert.Equal(WritebackOutcome.WrittenBack, device.StageWriteback(batch, 0, SlotSelection.All, minAge: 0));
            held = false;
            lease.Dispose(); // the recompression compresses now, and finds the page does not shrink
        }
        finally
        {
            if (held)
            {
                lease.Dispose();
            }
        }

        Assert.True(recompressor.Join(TimeSpan.FromSeconds(30)));
        RecompressOutcome outcome = seen;
        Assert.Equal(RecompressOutcome.NotSmaller, outcome);
        Assert.Equal(0, device.FlushWritebackBatch(batch, out _, out int failed));
        Assert.Equal(1, failed); // ENOSPC: the slot keeps its object

        File.Delete(filler);
        WritebackResult result = device.Writeback(SlotSelection.Incompressible);

        Assert.True(result.WrittenBack == 2,
            $"writeback incompressible wrote {result.WrittenBack} of the 2 huge pages recompression found incompressible (slot 0 info 0x{slots.PeekInfo(0):x}): "
            + "the one a failed batch staged during its recompression lost the mark");
    }
}
