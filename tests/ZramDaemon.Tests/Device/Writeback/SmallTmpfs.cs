using System.Diagnostics;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>
/// A tmpfs of a few blocks on a directory of its own, for a backing file whose writes fail with ENOSPC once it is
/// full; mounting needs root (the suite runs as root: scripts/test.sh). Unmounted and removed when disposed.
/// </summary>
internal sealed class SmallTmpfs : IDisposable
{
    public SmallTmpfs(string prefix, string size = "64k")
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
