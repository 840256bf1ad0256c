using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Writeback;
using ZramDaemon.Tests.Device;
using ZramDaemon.Tests.Device.Writeback;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review B (batched writeback, 98a7269). A slot staged in a writeback batch (SlotInfo.WritebackPending) is no longer
/// a writeback candidate for anyone: IsWritebackCandidate now refuses a marked slot. That keeps a second batch off it,
/// but it also keeps the WRITE PATH's own writeback at the memory limit off it (WritebackForRoom via WritebackSlot, and
/// StoreModifiedPage's WritebackLocked of the slot it is changing), although that writeback is synchronous, needs no
/// batch, and clears the mark itself (InBackingFile drops it, so the batch's switch then just gives its block back).
/// So while a run (the `zramd writeback` verb, or the background watermark run, which runs exactly when usage is
/// near the limit) has up to 32 slots in flight, a client's write that needs the room those objects hold fails with
/// ENOSPC, where before the batching (and on a twin device without the batch) the same write wrote the slot back and
/// succeeded: an I/O error to the NBD client (a filesystem or swap on top loses the write) while the backing file has
/// room. docs/device.md: "Only when nothing more can go to the file (no candidate left, the file full or
/// writeback-limit spent) does it return ENOSPC".
/// Found by reading IsWritebackCandidate's new `(info &amp; WritebackPending) == 0` and following its callers; the
/// batch is staged step by step with the internal StageWriteback/FlushWritebackBatch (as WritebackBatchTests do), so
/// the interleaving (client write between the copy and the switch) is certain.
/// </summary>
public sealed class RevBStagedSlotAtLimitTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-revb-limit-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A 1 MiB device at its minimum limit, which holds one huge page, with nothing in the background.</summary>
    private ZramDevice Create(string name) => QuietBackedDevice.Create(_dir, name);

    /// <summary>
    /// FAILS on the current code. Slot 0 holds a random (huge) page, the only object of a device at its limit; a writeback
    /// run has staged it (copied, marked, block taken) and not yet flushed. The client writes a new random page to slot
    /// 1: the only room is slot 0's object, which the write path would write back (the twin device, with no batch in
    /// flight, does exactly that and succeeds), but WritebackForRoom skips the marked slot and the write fails with
    /// ENOSPC. Seen: "write to slot 1 at the limit while slot 0 is staged: NoSpace".
    /// </summary>
    [Fact]
    public void A_write_at_the_limit_succeeds_while_the_only_candidate_is_staged_in_a_batch()
    {
        byte[] first = DevicePages.RandomPage(1), second = DevicePages.RandomPage(2);

        using ZramDevice twin = Create("zram1");
        Assert.Equal(NbdError.None, twin.Write(0, first, fua: false));
        Assert.Equal(NbdError.None, twin.Write(Page, second, fua: false)); // writes slot 0 back for room

        using ZramDevice device = Create("zram0");
        Assert.Equal(NbdError.None, device.Write(0, first, fua: false));
        var batch = new WritebackBatch();
        Assert.Equal(WritebackOutcome.WrittenBack, device.StageWriteback(batch, 0, SlotSelection.All, minAge: 0));

        NbdError error = device.Write(Page, second, fua: false); // the client, while the batch is in flight

        device.FlushWritebackBatch(batch, out _, out _);
        Assert.True(error == NbdError.None,
            $"write to slot 1 at the limit while slot 0 is staged: {error}; the twin without a batch in flight wrote slot 0 back and took the write");
        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.True(back.AsSpan().SequenceEqual(first), "slot 0 reads back different");
        Assert.Equal(NbdError.None, device.Read(Page, back));
        Assert.True(back.AsSpan().SequenceEqual(second), "slot 1 reads back different");
    }

    /// <summary>
    /// FAILS on the current code. As above, but the client changes part of the staged slot itself (a 512-byte WRITE):
    /// WritePartial holds the slot's lock, StorePage finds no room, and StoreModifiedPage's way out (write its own slot
    /// back, then store again: the RevW fix) calls WritebackLocked, which now skips the slot for its mark; the write
    /// fails with ENOSPC. The twin without a batch in flight takes the same write. Seen: "512-byte write to the staged
    /// slot 0 at the limit: NoSpace".
    /// </summary>
    [Fact]
    public void A_partial_write_at_the_limit_to_a_staged_slot_writes_it_back_as_without_the_batch()
    {
        byte[] page = DevicePages.RandomPage(3);
        byte[] part = DevicePages.RandomPage(4)[..512];
        var expected = (byte[])page.Clone();
        part.CopyTo(expected, 0);

        using ZramDevice twin = Create("zram1");
        Assert.Equal(NbdError.None, twin.Write(0, page, fua: false));
        Assert.Equal(NbdError.None, twin.Write(0, part, fua: false));

        using ZramDevice device = Create("zram0");
        Assert.Equal(NbdError.None, device.Write(0, page, fua: false));
        var batch = new WritebackBatch();
        Assert.Equal(WritebackOutcome.WrittenBack, device.StageWriteback(batch, 0, SlotSelection.All, minAge: 0));

        NbdError error = device.Write(0, part, fua: false);

        device.FlushWritebackBatch(batch, out _, out _);
        Assert.True(error == NbdError.None,
            $"512-byte write to the staged slot 0 at the limit: {error}; the twin without a batch in flight wrote the slot back and took the write");
        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.True(back.AsSpan().SequenceEqual(expected), "slot 0 reads back different");
    }
}
