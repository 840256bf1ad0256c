using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Writeback;
using ZramDaemon.Tests.Device;

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
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-revx-").FullName;
    private readonly bool _mounted;

    public RevXFailedWritesBoundTests()
    {
        using var mount = Process.Start("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", _dir])!;
        mount.WaitForExit();
        _mounted = mount.ExitCode == 0;
    }

    public void Dispose()
    {
        if (_mounted)
        {
            using var umount = Process.Start("umount", [_dir])!;
            umount.WaitForExit();
        }

        Directory.Delete(_dir, recursive: true);
    }

    private ZramDevice Create()
    {
        Assert.True(_mounted, $"mounting a 64 KiB tmpfs on {_dir} failed: run the tests as root");
        var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = (long)Pages * Page,
            BackingFile = Path.Combine(_dir, "zram0.wb"),
        }, NullLoggerFactory.Instance);
        for (int i = 0; i < Pages; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        return device;
    }

    /// <summary>
    /// FAILS on the current code. `zramd writeback NAME max_pages=20` on a file system with room for 16 blocks: the
    /// run should try at most 20 pages (the kernel's scan picks at most that many slots, and a failed bio is one of
    /// them; zramd's docs: "max_pages=N (at most N pages ...)"). It tries all 64: 16 written and 48 failed, since only
    /// written pages count against max_pages. On a failing disk max_pages=N no longer bounds the work at all.
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
}
