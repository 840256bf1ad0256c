using System.Globalization;
using ZramDaemon.Tests.Daemon;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (RevW) helper: an ext4 filesystem (no journal) on a loop device whose image is a sparse file on a tmpfs of
/// <c>tmpfsMiB</c>. With an image larger than the tmpfs, ext4 believes it has room (a write(2) into it succeeds) while
/// the blocks under it run out: the page cache's writeback then fails with an I/O error (thin provisioning
/// overcommitted, as a bad disk or an NFS server would fail it), after the write(2) returned. Needs root (the suite
/// runs as root: scripts/test.sh). Everything is undone by <see cref="Dispose"/>, in order.
/// </summary>
internal sealed class RevWExt4Mount : IDisposable
{
    private readonly string _tmpfs;
    private readonly string? _loop;
    private readonly bool _tmpfsMounted;
    private readonly bool _ext4Mounted;

    public RevWExt4Mount(int tmpfsMiB, int imageMiB)
    {
        _tmpfs = Directory.CreateTempSubdirectory("zramd-revw-tmpfs-").FullName;
        Path = Directory.CreateTempSubdirectory("zramd-revw-ext4-").FullName;
        try
        {
            ClientTool.Run("mount", ["-t", "tmpfs", "-o", $"size={tmpfsMiB}m", "tmpfs", _tmpfs]).EnsureSuccess();
            _tmpfsMounted = true;
            string image = System.IO.Path.Combine(_tmpfs, "ext4.img");
            ClientTool.Run("truncate", ["-s", imageMiB.ToString(CultureInfo.InvariantCulture) + "M", image]).EnsureSuccess();
            ClientTool.Run("mkfs.ext4", ["-q", "-F", "-O", "^has_journal", "-E", "lazy_itable_init=1,nodiscard", image]).EnsureSuccess();
            _loop = ClientTool.Run("losetup", ["-f", "--show", image]).EnsureSuccess().Stdout.Trim();
            ClientTool.Run("mount", [_loop, Path]).EnsureSuccess();
            _ext4Mounted = true;
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Where the ext4 filesystem is mounted.</summary>
    public string Path { get; }

    public void Dispose()
    {
        if (_ext4Mounted)
        {
            ClientTool.Run("umount", [Path]);
        }

        if (_loop is { Length: > 0 })
        {
            ClientTool.Run("losetup", ["-d", _loop]);
        }

        if (_tmpfsMounted)
        {
            ClientTool.Run("umount", [_tmpfs]);
        }

        try
        {
            Directory.Delete(Path, recursive: true);
            Directory.Delete(_tmpfs, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
