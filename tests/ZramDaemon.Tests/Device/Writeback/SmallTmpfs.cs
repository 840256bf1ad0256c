using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>
/// A tmpfs of a few blocks on a directory of its own, for a backing file whose writes fail with ENOSPC once it is
/// full; mounting needs root (the suite runs as root: scripts/test.sh). Unmounted and removed when disposed.
/// </summary>
internal sealed class SmallTmpfs : IDisposable
{
    public SmallTmpfs(string prefix, string size = "68k")
    {
        Size = size;
        Dir = Directory.CreateTempSubdirectory(prefix).FullName;
        using var mount = Process.Start("mount", ["-t", "tmpfs", "-o", "size=" + size, "tmpfs", Dir])!;
        mount.WaitForExit();
        Mounted = mount.ExitCode == 0;
    }

    public string Dir { get; }

    public string Size { get; }

    public bool Mounted { get; }

    /// <summary>Fails the test, saying why, when the mount failed.</summary>
    public void AssertMounted() => Assert.True(Mounted, $"mounting a {Size} tmpfs on {Dir} failed: run the tests as root");

    /// <summary>
    /// A device of <paramref name="pages"/> pages whose backing file (zram0.wb) lives here, its first
    /// <paramref name="textPages"/> pages written with <see cref="DevicePages.TextPage"/> (their index); the test
    /// fails first if the mount did. A 68k tmpfs holds 16 blocks and the file's trailer (BackingFile.Trailer): a run's 17th write fails.
    /// </summary>
    public ZramDevice BackedDevice(int pages, int textPages, ILoggerFactory? loggers = null)
    {
        AssertMounted();
        var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = (long)pages * ZramDevice.PageSize,
            BackingFile = Path.Combine(Dir, "zram0.wb"),
        }, loggers ?? NullLoggerFactory.Instance);
        for (int i = 0; i < textPages; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * ZramDevice.PageSize, DevicePages.TextPage(i), fua: false));
        }

        return device;
    }

    public void Dispose()
    {
        if (Mounted)
        {
            using var umount = Process.Start("umount", [Dir])!;
            umount.WaitForExit();
        }

        Directory.Delete(Dir, recursive: true);
    }
}
