using System.Runtime.InteropServices;

namespace Nbd.Native;

/// <summary>The few libc calls .NET does not expose the way we need them (permissions of a Unix socket file).</summary>
internal static partial class Libc
{
    private const string LibraryName = "libc";

    [LibraryImport(LibraryName, EntryPoint = "chmod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int Chmod(string path, uint mode);

    [LibraryImport(LibraryName, EntryPoint = "chown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int Chown(string path, int owner, int group);

    /// <summary>Returns a struct group* (or null); gr_gid follows the two char* fields gr_name and gr_passwd.</summary>
    [LibraryImport(LibraryName, EntryPoint = "getgrnam", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial IntPtr GetGroupByName(string name);

    internal static int GroupIdOffset => 2 * IntPtr.Size;
}
