using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device.Io;

/// <summary>
/// BLOCK_STATUS (and the structured READ, which sends the extents GetExtents calls zero as OFFSET_HOLE chunks without
/// reading them) against a slot that is being overwritten: whatever the moment, a slot that never holds zeros must not
/// be reported HOLE|ZERO.
/// </summary>
public class ExtentsDuringOverwriteTests
{
    private const int Page = ZramDevice.PageSize;

    /// <summary>
    /// GetExtents used to peek a slot's info and then its value, two separate loads, while a writer's Set stored the
    /// value and then the info (now one 8-byte store, and one load in SlotTable.Peek). A slot going from a
    /// same-filled page whose value lives in a pool word (info Written|Same, value = the word's handle) to a
    /// deduplicated page whose entry id is 0 (info Written|Deduped, value 0) can be seen as info Written|Same with
    /// value 0: SlotInfo.IsZero's "same-filled zero page". Neither page is zero, yet the slot was reported HOLE|ZERO,
    /// and a structured NBD READ of it at that moment returned a hole (zeros) instead of either page (7 of 7 runs
    /// within a second).
    /// </summary>
    [Fact]
    public void A_slot_overwritten_between_a_word_filled_page_and_dedup_entry_0_is_never_reported_as_a_zero_hole()
    {
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "extents", DiskSize = 1L << 20, Dedup = true },
            NullLoggerFactory.Instance);
        byte[] text = DevicePages.TextPage(1);
        byte[] word = DevicePages.SameFilled(0x0102030405060708UL); // halves differ: kept in a pool word
        // Slot 1 holds the text page as the index's first entry (id 0) and keeps it alive; slot 0 starts as the word page.
        Assert.Equal(NbdError.None, device.Write(Page, text, fua: false));
        device.Slots.Peek(1, out uint entry, out _);
        Assert.Equal(0u, entry);
        Assert.Equal(NbdError.None, device.Write(0, word, fua: false));

        bool stop = false;
        var writer = new Thread(() =>
        {
            while (!Volatile.Read(ref stop))
            {
                // Neither write can fail (no limit); the slot is never zero.
                device.Write(0, text, fua: false); // a reference to entry 0: value 0
                device.Write(0, word, fua: false); // a pool word: value = its handle
            }
        });
        writer.Start();

        var extents = new BlockExtent[4];
        long looks = 0, zeros = 0;
        long deadline = Environment.TickCount64 + 3_000;
        try
        {
            while (zeros == 0 && Environment.TickCount64 < deadline)
            {
                for (int i = 0; i < 10_000; i++)
                {
                    looks++;
                    Assert.Equal(1, device.GetExtents(0, Page, extents));
                    if (extents[0].Flags != ExtentFlags.Allocated)
                    {
                        zeros++;
                    }
                }
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            writer.Join();
        }

        Assert.True(zeros == 0, $"{zeros} of {looks} block-status looks reported slot 0, which never holds zeros, as HOLE|ZERO");
    }
}
