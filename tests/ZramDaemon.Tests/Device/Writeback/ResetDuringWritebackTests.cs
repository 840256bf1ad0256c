using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Writeback;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>
/// A reset (the control verb, refused only while NBD clients are connected) that comes while a writeback run is going:
/// the kernel's reset_store takes init_lock for writing, which writeback_store holds for reading through its whole run,
/// so the reset waits for the run, then empties the device and zeroes bd_stat. Here the reset went on beside the run:
/// what the run wrote after it counted in bd_writes of the emptied device. The backing file lives on a 64 KiB tmpfs (16
/// blocks; mounting needs root, as the suite runs), so the run's 17th write fails, and the run holds its turn while it
/// logs that: the reset is asked for there.
/// </summary>
public sealed class ResetDuringWritebackTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly SmallTmpfs _tmpfs = new("zramd-reset-wb-");

    public void Dispose() => _tmpfs.Dispose();

    [Fact]
    public void A_reset_during_a_writeback_run_waits_for_it_then_leaves_no_page_or_count_behind()
    {
        ZramDevice? device = null;
        Thread? reset = null;
        bool resetDuringRun = false;
        var loggers = new CallbackLoggerFactory((_, eventId) =>
        {
            // The run's first failed write (event 10), logged inside its turn: a reset starts, and is given time to end.
            if (eventId == 10 && reset is null)
            {
                reset = new Thread(() => device!.Reset());
                reset.Start();
                resetDuringRun = reset.Join(TimeSpan.FromMilliseconds(500));
            }
        });
        device = _tmpfs.BackedDevice(pages: 256, textPages: 64, loggers);
        using (device)
        {
            WritebackResult result = device.Writeback(SlotSelection.All);
            Assert.NotNull(reset);
            Assert.False(resetDuringRun, "the reset ended while the writeback run was still going");
            Assert.True(reset.Join(TimeSpan.FromSeconds(30)), "the reset did not end after the run");

            // The run was the run it would have been alone: 16 blocks, the rest failed.
            Assert.Equal((16, 48), (result.WrittenBack, result.Failed));
            ZramStats stats = device.GetStats();
            Assert.Equal((0L, 0L, 0L, 0L), (stats.BdCount, stats.BdWrites, stats.BdReads, stats.OrigDataSize));
            var back = new byte[Page];
            for (int i = 0; i < 64; i++)
            {
                Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
                Assert.True(back.AsSpan().IndexOfAnyExcept((byte)0) < 0, $"page {i} still holds data after the reset");
            }
        }
    }
}
