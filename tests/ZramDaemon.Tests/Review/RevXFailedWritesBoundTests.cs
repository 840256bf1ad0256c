using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ZramDaemon.Control;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Writeback;
using ZramDaemon.Tests.Device;

using ZramDaemon.Tests.Device.Writeback;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Since a2380d2 a failed write to the backing file no longer ends a writeback run. The run's two bounds,
/// max_pages and the time limit (DeviceRegistry.RunTimeLimit, 5 s, "well below the control client's timeout (30 s),
/// so that the reply comes in time"), are only counted/checked on a page WRITTEN: ZramDevice.Writeback's loop tests
/// `written &lt; maxPages`, and looks at the clock only in the `outcome == WrittenBack` branch. A failing file (every
/// write ENOSPC/EIO) so makes a bounded run try every candidate of the device. The backing file lives on a 64 KiB
/// tmpfs (16 blocks; root, as WritebackGoesOnAfterFailureTests).
/// </summary>
public sealed class RevXFailedWritesBoundTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private const int Pages = 64;
    private readonly SmallTmpfs _tmpfs = new("zramd-revx-");

    public void Dispose() => _tmpfs.Dispose();

    private ZramDevice Create(ILoggerFactory? loggers = null) => _tmpfs.BackedDevice(Pages, Pages, loggers);

    /// <summary>
    /// FAILS on the current code. `zramd writeback NAME max_pages=20` on a file system with room for 16 blocks: the
    /// run should try at most 20 pages (zramd's help: "max_pages=N (at most N pages, the largest objects first)"; the
    /// budget is what bounds a run's work, as recompress's max_pages counts pages tried). It tries all 64: 16 written
    /// and 48 failed, since only written pages count against max_pages (before a2380d2 the first failure ended the
    /// run, so this did not arise). On a failing disk max_pages=N no longer bounds the work at all.
    /// </summary>
    [Fact]
    public void Max_pages_bounds_the_pages_tried_when_writes_fail()
    {
        using ZramDevice device = Create();

        WritebackResult result = device.Writeback(SlotSelection.All, maxPages: 20);

        Assert.True(result.WrittenBack + result.Failed <= 20,
            $"max_pages=20 tried {result.WrittenBack + result.Failed} pages ({result.WrittenBack} written, {result.Failed} failed): "
            + "failed writes do not count against max_pages, so a failing file makes the run try every page");
    }

    /// <summary>
    /// FAILS on the current code. The run's time limit (DeviceRegistry passes 5 s so that the reply comes before the
    /// client's 30-s timeout) is looked at only after a page is written. When every write fails (here the file system
    /// is full after a first run; on a failing disk each failed write may take seconds of retries), the run never
    /// checks the clock and goes through every page: `zramd writeback` then outlives the client's timeout and the
    /// user gets no reply. With a zero time limit the run should stop at the first page it tried.
    /// </summary>
    [Fact]
    public void The_time_limit_applies_when_every_write_fails()
    {
        using ZramDevice device = Create();
        WritebackResult first = device.Writeback(SlotSelection.All);
        Assert.Equal(16, first.WrittenBack); // the file system is full now
        Assert.Equal(Pages - 16, first.Failed);

        WritebackResult result = device.Writeback(SlotSelection.All, timeLimit: TimeSpan.Zero);

        Assert.True(result.StoppedByTimeLimit && result.Failed < Pages - 16,
            $"with a zero time limit the run tried {result.Failed} failing writes and StoppedByTimeLimit={result.StoppedByTimeLimit}: "
            + "the clock is looked at only after a page written, so a run whose writes fail ignores its time limit");
    }

    /// <summary>
    /// FAILS on the current code. Two `zramd writeback` runs a few seconds apart on a full file system: each reply
    /// fails with "N writes to the backing file failed (see the log)", but NoteWritebackFailure logs at most one line
    /// in 10 s, so the second run's failures leave nothing in the log at all (not its count, not its error: ENOSPC or
    /// EIO); the count of unlogged failures is printed only with some later failure, 10 s on, if one ever comes. A run
    /// whose reply sends the user to the log must leave something there (e.g. one line per run with its count and the
    /// last error, or the rate limit's pending count flushed at the end of the run).
    /// </summary>
    [Fact]
    public async Task Every_run_whose_reply_says_see_the_log_leaves_a_line_in_the_log()
    {
        int errors = 0;
        var loggers = new CallbackLoggerFactory((level, _) =>
        {
            if (level >= LogLevel.Warning)
            {
                Interlocked.Increment(ref errors);
            }
        });
        using ZramDevice device = Create(loggers);
        ControlReply first = await RevFControlVerbTests.SendAsync(device, "writeback zram0");
        Assert.False(first.Ok);
        int linesBefore = Volatile.Read(ref errors);
        Assert.True(linesBefore >= 1, "the first run's failures logged nothing");

        ControlReply second = await RevFControlVerbTests.SendAsync(device, "writeback zram0");

        Assert.False(second.Ok);
        Assert.Contains("see the log", second.Error, StringComparison.Ordinal);
        Assert.True(Volatile.Read(ref errors) > linesBefore,
            $"the second run answered \"{second.Error}\", and logged no warning or error: its failures went unlogged (one line in 10 s, taken by the first run)");
    }
}
