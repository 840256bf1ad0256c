using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Writeback;
using ZramDaemon.Tests.Device;
using ZramDaemon.Tests.Device.Writeback;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review C (batched writeback after the review B fixes, 1577bb2). The fix lets the write path's own writeback at the
/// memory limit (WritebackForRoom, StoreModifiedPage's WritebackLocked) take a slot a batch has staged: the batch then
/// gives back its block and budget page at the settle. But the write path's TakeBlockFor asks for a page of the
/// daily budget and a block of the file of its own, while the batch still holds the ones it took at staging for that
/// very slot. So a slot now costs two blocks and two budget pages while it is staged:
/// - the file has exactly one block per slot (ZramDevice's constructor: "a slot holds at most one, so the file never
///   fills before the device does"); with the rest of the device written back and the remainder staged, every block
///   is held and the write path's writeback finds NoRoom;
/// - a daily writeback_limit spent down to the pages the batch holds refuses the write path's page (NoBudget).
/// Either way the client's write fails with ENOSPC, where the twin device without a batch in flight (the same data,
/// limits and file) writes the same slot back and takes the write. docs/device.md: ENOSPC "only when nothing more can
/// go to the file". The review-B case (RevBStagedSlotAtLimitTests) passes only because its file and budget had room
/// for both. Found by counting what a staged slot holds against what TakeBlockFor asks for; staged step by step with
/// the internal StageWriteback/FlushWritebackBatch, so the interleaving is certain.
/// </summary>
public sealed class RevCStagedSlotResourcesTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-revc-res-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private ZramDevice Create(string name, long diskSize, long memLimit, long writebackLimitPerDay = 0)
        => QuietBackedDevice.Create(_dir, name, diskSize, memLimit, writebackLimitPerDay);

    /// <summary>
    /// FAILS on the current code. A 16-page device (16 blocks of file) full of huge pages, every slot staged in a batch
    /// (all 16 blocks held), then put at its limit. The client rewrites slot 0 with a new huge page: the write path's
    /// writeback takes a staged slot, asks for a 17th block, gets NoRoom, and the write fails. The twin (same pages,
    /// same limit, no batch) writes a slot back and takes the write. Seen: "write at the limit while the batch holds
    /// the file's blocks: NoSpace".
    /// </summary>
    [Fact]
    public void A_write_at_the_limit_is_not_refused_for_the_blocks_the_batch_holds_for_the_same_slots()
    {
        const int Pages = 16;
        using ZramDevice twin = Create("zram1", Pages * Page, memLimit: 0);
        using ZramDevice device = Create("zram0", Pages * Page, memLimit: 0);
        for (int i = 0; i < Pages; i++)
        {
            Assert.Equal(NbdError.None, twin.Write((long)i * Page, DevicePages.RandomPage(i), fua: false));
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.RandomPage(i), fua: false));
        }

        var batch = new WritebackBatch();
        for (int i = 0; i < Pages; i++)
        {
            Assert.Equal(WritebackOutcome.WrittenBack, device.StageWriteback(batch, i, SlotSelection.All, minAge: 0));
        }

        twin.SetMemLimit(twin.MemUsedTotal);
        device.SetMemLimit(device.MemUsedTotal);
        byte[] newer = DevicePages.RandomPage(100);
        Assert.Equal(NbdError.None, twin.Write(0, newer, fua: false));

        NbdError error = device.Write(0, newer, fua: false); // the client, while the batch is in flight

        device.FlushWritebackBatch(batch, out _, out _);
        Assert.True(error == NbdError.None,
            $"write at the limit while the batch holds the file's blocks: {error}; the twin without a batch in flight wrote a slot back and took the write");
        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.True(back.AsSpan().SequenceEqual(newer), "slot 0 reads back different");
    }

    /// <summary>
    /// FAILS on the current code. A device at its minimum limit (room for one huge page) with a daily writeback_limit
    /// of one page: slot 0's huge page is staged (the page of budget taken). The client writes a huge page to slot 1:
    /// the write path's writeback takes staged slot 0, asks for a second page of budget, gets NoBudget, and the write
    /// fails. The twin (same limit, no batch) writes slot 0 back with its one page and takes the write. Seen: "write
    /// at the limit while slot 0 is staged, writeback_limit one page: NoSpace".
    /// </summary>
    [Fact]
    public void A_write_at_the_limit_is_not_refused_for_the_budget_the_batch_holds_for_the_same_slot()
    {
        const long DiskSize = 1L << 20;
        long limit = ZramDevice.MinimumMemLimitFor(DiskSize, dedup: false);
        byte[] first = DevicePages.RandomPage(1), second = DevicePages.RandomPage(2);

        using ZramDevice twin = Create("zram1", DiskSize, limit, writebackLimitPerDay: Page);
        Assert.Equal(NbdError.None, twin.Write(0, first, fua: false));
        Assert.Equal(NbdError.None, twin.Write(Page, second, fua: false)); // writes slot 0 back with its one page

        using ZramDevice device = Create("zram0", DiskSize, limit, writebackLimitPerDay: Page);
        Assert.Equal(NbdError.None, device.Write(0, first, fua: false));
        var batch = new WritebackBatch();
        Assert.Equal(WritebackOutcome.WrittenBack, device.StageWriteback(batch, 0, SlotSelection.All, minAge: 0));

        NbdError error = device.Write(Page, second, fua: false); // the client, while the batch is in flight

        device.FlushWritebackBatch(batch, out _, out _);
        Assert.True(error == NbdError.None,
            $"write at the limit while slot 0 is staged, writeback_limit one page: {error}; the twin without a batch in flight wrote slot 0 back and took the write");
        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.True(back.AsSpan().SequenceEqual(first), "slot 0 reads back different");
        Assert.Equal(NbdError.None, device.Read(Page, back));
        Assert.True(back.AsSpan().SequenceEqual(second), "slot 1 reads back different");
    }
    /// <summary>
    /// FAILS on the current code. The own-slot case (StoreModifiedPage): as above, but the client changes part of the
    /// staged slot 0 itself (a 512-byte WRITE). The store finds no room; the write path's writeback of slot 0 (which the
    /// review-B fix lets it take) asks for a second page of the one-page budget the batch holds for this same slot, gets
    /// NoBudget, and the write fails. The twin without a batch takes the same write. Seen: "512-byte write to staged slot
    /// 0 at the limit, writeback_limit one page: NoSpace".
    /// </summary>
    [Fact]
    public void A_partial_write_at_the_limit_to_a_staged_slot_is_not_refused_for_the_budget_the_batch_holds_for_it()
    {
        const long DiskSize = 1L << 20;
        long limit = ZramDevice.MinimumMemLimitFor(DiskSize, dedup: false);
        byte[] page = DevicePages.RandomPage(3);
        byte[] part = DevicePages.RandomPage(4)[..512];
        var expected = (byte[])page.Clone();
        part.CopyTo(expected, 0);

        using ZramDevice twin = Create("zram1", DiskSize, limit, writebackLimitPerDay: Page);
        Assert.Equal(NbdError.None, twin.Write(0, page, fua: false));
        Assert.Equal(NbdError.None, twin.Write(0, part, fua: false));

        using ZramDevice device = Create("zram0", DiskSize, limit, writebackLimitPerDay: Page);
        Assert.Equal(NbdError.None, device.Write(0, page, fua: false));
        var batch = new WritebackBatch();
        Assert.Equal(WritebackOutcome.WrittenBack, device.StageWriteback(batch, 0, SlotSelection.All, minAge: 0));

        NbdError error = device.Write(0, part, fua: false); // the client, while the batch is in flight

        device.FlushWritebackBatch(batch, out _, out _);
        Assert.True(error == NbdError.None,
            $"512-byte write to staged slot 0 at the limit, writeback_limit one page: {error}; the twin without a batch in flight wrote the slot back and took the write");
        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.True(back.AsSpan().SequenceEqual(expected), "slot 0 reads back different");
    }
}
