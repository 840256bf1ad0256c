using System.Runtime.InteropServices;
using ZramDaemon.Native;

namespace ZramDaemon.Configuration;

/// <summary>
/// Which file a path reaches, whatever the way there (a symlinked directory, a symlink to the file, a hard link):
/// the file's device and inode when it exists; when it does not yet, its directory's device and inode and the name
/// it will be created under. Two paths with one identity are one file; comparing the paths' text misses all three.
/// </summary>
/// <param name="Name">Null for a file that exists; the name in the directory <paramref name="Device"/> and
/// <paramref name="Inode"/> are of, for one to be created; the full path when not even that can be known.</param>
internal readonly record struct FileIdentity(ulong Device, ulong Inode, string? Name)
{
    /// <param name="fullPath">A full path, as opened: its <c>..</c> already resolved as the kernel does (see
    /// <see cref="FilePath.TryGetFullPath"/>).</param>
    public static FileIdentity Of(string fullPath)
    {
        string target = fullPath;
        try
        {
            // A symlink to a file not made yet: open(O_CREAT) makes the file where the link points.
            target = File.ResolveLinkTarget(fullPath, returnFinalTarget: true)?.FullName ?? fullPath;
        }
        catch (IOException)
        {
            // Nothing there (or a loop, which the open will report): the path is the file's own.
        }
        catch (UnauthorizedAccessException)
        {
        }

        if (TryStat(target, out ulong device, out ulong inode))
        {
            return new FileIdentity(device, inode, null);
        }

        return Path.GetDirectoryName(target) is { } folder && TryStat(folder, out device, out inode)
            ? new FileIdentity(device, inode, Path.GetFileName(target))
            : new FileIdentity(0, 0, target);
    }

    private static bool TryStat(string path, out ulong device, out ulong inode)
    {
        Span<byte> statx = stackalloc byte[Interop.Libc.StatxBufferSize];
        if (Interop.Libc.Statx(Interop.Libc.AtFdCwd, path, 0, Interop.Libc.StatxBasicStats, statx) != 0)
        {
            device = inode = 0;
            return false;
        }

        device = ((ulong)MemoryMarshal.Read<uint>(statx[Interop.Libc.StatxDeviceMajorOffset..]) << 32)
            | MemoryMarshal.Read<uint>(statx[(Interop.Libc.StatxDeviceMajorOffset + 4)..]);
        inode = MemoryMarshal.Read<ulong>(statx[Interop.Libc.StatxInodeOffset..]);
        return true;
    }
}
