using System.Runtime.InteropServices;

namespace ZramDaemon.Native;

/// <summary>The libc calls the daemon needs for swap safety that .NET does not expose.</summary>
internal static partial class Interop
{
    internal static partial class Libc
    {
        private const string LibraryName = "libc";

        // <sys/mman.h>
        internal const int McCurrent = 1;
        internal const int McFuture = 2;
        internal const int McOnFault = 4;

        // <linux/prctl.h>
        internal const int PrSetIoFlusher = 57;
        internal const int PrGetIoFlusher = 58;

        [LibraryImport(LibraryName, EntryPoint = "mlockall", SetLastError = true)]
        internal static partial int MLockAll(int flags);

        [LibraryImport(LibraryName, EntryPoint = "munlockall", SetLastError = true)]
        internal static partial int MUnlockAll();

        [LibraryImport(LibraryName, EntryPoint = "prctl", SetLastError = true)]
        internal static partial int Prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

        // <sys/stat.h>: the file type bits of st_mode.
        internal const uint FileTypeMask = 0xF000;
        internal const uint SocketFileType = 0xC000;

        /// <summary>lstat(2) into a buffer as large as any struct stat (144 bytes on x86-64, 128 on arm64).</summary>
        [LibraryImport(LibraryName, EntryPoint = "lstat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int LStat(string path, Span<byte> statBuffer);

        /// <summary>st_mode of <see cref="LStat"/>'s buffer: after st_dev, st_ino, st_nlink (8 bytes each) on
        /// x86-64; after st_dev, st_ino only on arm64 (the generic layout).</summary>
        internal static int StatModeOffset => System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture
            == System.Runtime.InteropServices.Architecture.X64 ? 24 : 16;
    }
}
