using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Writeback;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>
/// A writeback batch copies its slots' objects, writes them with one wait, then switches each slot still marked
/// (SlotInfo.WritebackPending) to its block. What a client does to a slot between the copy and the switch must win:
/// here the steps are taken one by one (the batch's internal stage and flush), so the interleaving is certain.
/// </summary>
public sealed class WritebackBatchTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-wbbatch-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_slot_written_or_trimmed_while_its_batch_is_in_flight_keeps_what_the_client_did()
    {
        using var device = NewDevice();
        byte[][] model = [.. Enumerable.Range(0, 6).Select(DevicePages.TextPage)];
        for (int i = 0; i < model.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
        }

        var batch = new WritebackBatch();
        for (int i = 0; i < model.Length; i++)
        {
            Assert.Equal(WritebackOutcome.WrittenBack, device.StageWriteback(batch, i, SlotSelection.All, minAge: 0));
        }

        // Staged slots are not offered twice (to another batch or the write path's writeback).
        Assert.Equal(WritebackOutcome.Skipped, device.StageWriteback(batch, 0, SlotSelection.All, minAge: 0));

        // Meanwhile: slot 1 rewritten, slot 2 trimmed, slot 3 read, slot 4 marked idle (the last two keep the object).
        byte[] newer = DevicePages.TextPage(100);
        Assert.Equal(NbdError.None, device.Write(1L * Page, newer, fua: false));
        Assert.Equal(NbdError.None, device.Trim(2L * Page, Page));
        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(3L * Page, back));
        device.MarkIdle();

        int written = device.FlushWritebackBatch(batch, out long freed, out int failed);

        Assert.Equal(4, written); // 0, 3, 4 and 5; not 1 nor 2
        Assert.Equal(0, failed);
        Assert.Equal(0, batch.Count);
        ZramStats stats = device.GetStats();
        Assert.Equal(4, stats.BdCount); // the blocks of 1 and 2 went back
        Assert.Equal(5L * Page, stats.OrigDataSize);
        model[1] = newer;
        model[2] = new byte[Page];
        for (int i = 0; i < model.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(model[i]), $"page {i} reads back different");
        }

        // Only slot 1's new object is left in the pool, and no mark stayed behind: a run writes it back.
        device.FlushDeferredFrees();
        Assert.Equal(1, device.GetPoolStats().Objects);
        Assert.Equal(1, device.Writeback(SlotSelection.All).WrittenBack);
        Assert.Equal(0, device.GetPoolStats().Objects);
    }

    [Fact]
    public void A_batch_given_up_leaves_no_mark_and_no_block()
    {
        using var device = NewDevice();
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        var batch = new WritebackBatch();
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(WritebackOutcome.WrittenBack, device.StageWriteback(batch, i, SlotSelection.All, minAge: 0));
        }

        Assert.Equal(4, device.GetStats().BdCount); // blocks taken at staging

        // A batch full of slots rewritten meanwhile: every block goes back, nothing is counted written.
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(10 + i), fua: false));
        }

        Assert.Equal(0, device.FlushWritebackBatch(batch, out long freed, out _));
        Assert.Equal(0, freed);
        Assert.Equal(0, device.GetStats().BdCount);
        Assert.Equal(4, device.Writeback(SlotSelection.All).WrittenBack);
        var back = new byte[Page];
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(DevicePages.TextPage(10 + i)), $"page {i} reads back different");
        }
    }

    private ZramDevice NewDevice() => new(new ZramDeviceOptions
    {
        Name = "zram0",
        DiskSize = 1L << 20,
        BackingFile = Path.Combine(_dir, "zram0.wb"),
        CompactInterval = TimeSpan.FromHours(1),
    }, NullLoggerFactory.Instance);
}
