using Microsoft.Extensions.Logging;
using Nbd.Devices;
using ZramDaemon.Control;
using ZramDaemon.Device;
using ZramDaemon.Device.Writeback;
using ZramDaemon.Tests.Review;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>
/// A writeback run does not stop at a failed write, as the kernel's (zram_writeback_slots: "BIO errors are not fatal,
/// we continue and simply attempt to writeback the remaining objects", returning the error at the end): what fails is
/// said once at the end, and the pages after it still go. The backing file lives on a 64 KiB tmpfs (16 blocks), which
/// needs root to mount (the suite runs as root: scripts/test.sh). The first failure is logged; a client's trim of
/// written-back pages at that moment gives the filesystem room again, as a client's trims may at any time.
/// </summary>
public sealed class WritebackGoesOnAfterFailureTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly SmallTmpfs _tmpfs = new("zramd-wbgo-");

    public void Dispose() => _tmpfs.Dispose();

    [Fact]
    public void A_failed_write_does_not_end_the_run_and_the_reply_counts_the_failures()
    {
        ZramDevice? device = null;
        int failuresLogged = 0;
        var loggers = new CallbackLoggerFactory((_, eventId) =>
        {
            // The writeback's failure (event 10): at the first, the client trims the four pages written back first.
            if (eventId == 10 && Interlocked.Increment(ref failuresLogged) == 1)
            {
                Assert.Equal(NbdError.None, device!.Trim(0, 4L * Page));
            }
        });
        device = _tmpfs.BackedDevice(pages: 256, textPages: 64, loggers);
        using (device)
        {
            var model = new byte[64][];
            for (int i = 0; i < model.Length; i++)
            {
                model[i] = DevicePages.TextPage(i);
            }

            WritebackResult result = device.Writeback(SlotSelection.All);

            // 16 blocks fit; the 17th write fails; the trim at that failure frees 4; 4 more are written; the other 43
            // fail (a run that stopped at the first failure wrote 16 and said nothing of the 47 it left).
            Assert.Equal(20, result.WrittenBack);
            Assert.Equal(44, result.Failed);
            Assert.Equal(20, device.GetStats().BdWrites);
            Assert.Equal(16, device.GetStats().BdCount); // the 4 trimmed gave their blocks back
            Assert.Equal(1, failuresLogged); // one line for the run's failures, not one a page

            var back = new byte[Page];
            for (int i = 4; i < model.Length; i++)
            {
                Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
                Assert.True(back.AsSpan().SequenceEqual(model[i]), $"page {i} reads back different");
            }
        }
    }

    /// <summary>`zramd writeback` on a file system with room for 16 of 64 pages: a failure that says how many writes
    /// failed, and the run went through them all (the reply of a run that stopped at the first said nothing of the
    /// rest).</summary>
    [Fact]
    public async Task The_writeback_verb_fails_and_says_how_many_writes_failed()
    {
        using ZramDevice device = _tmpfs.BackedDevice(pages: 256, textPages: 64);

        ControlReply reply = await RevFControlVerbTests.SendAsync(device, "writeback zram0");

        Assert.False(reply.Ok, "the reply was a success: " + reply.Text);
        Assert.Contains("wrote 16 pages back", reply.Error, StringComparison.Ordinal);
        Assert.Contains("48 writes to the backing file failed", reply.Error, StringComparison.Ordinal);
    }
}
