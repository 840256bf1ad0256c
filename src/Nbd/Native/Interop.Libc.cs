using System.Runtime.InteropServices;

namespace Nbd.Native;

/// <summary>The few libc calls .NET does not expose the way we need them (permissions of a Unix socket file, request
/// buffers that go back to the OS when their connection ends).</summary>
internal static partial class Libc
{
    private const string LibraryName = "libc";

    internal const int ProtRead = 0x1;
    internal const int ProtWrite = 0x2;
    internal const int MapPrivate = 0x02;
    internal const int MapAnonymous = 0x20;
    internal const int MapNoReserve = 0x4000;

    /// <summary>mmap's MAP_FAILED, (void*)-1.</summary>
    internal static readonly nint MapFailed = -1;

    [LibraryImport(LibraryName, EntryPoint = "mmap", SetLastError = true)]
    internal static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport(LibraryName, EntryPoint = "munmap", SetLastError = true)]
    internal static partial int Munmap(nint address, nuint length);

    [LibraryImport(LibraryName, EntryPoint = "chmod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int Chmod(string path, uint mode);

    [LibraryImport(LibraryName, EntryPoint = "chown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int Chown(string path, int owner, int group);

    /// <summary>Returns a struct group* (or null); gr_gid follows the two char* fields gr_name and gr_passwd.</summary>
    [LibraryImport(LibraryName, EntryPoint = "getgrnam", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial IntPtr GetGroupByName(string name);

    internal static int GroupIdOffset => 2 * IntPtr.Size;
}
