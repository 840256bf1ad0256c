using System.Runtime.InteropServices;

namespace ZsAlloc.Native;

/// <summary>The libc calls the allocator makes: anonymous mappings for arenas, MADV_DONTNEED to hand pages back and
/// MADV_POPULATE_WRITE to fault pages in ahead of a lock.</summary>
internal static partial class Interop
{
    internal static partial class Libc
    {
        internal const int ProtRead = 0x1;
        internal const int ProtWrite = 0x2;
        internal const int MapPrivate = 0x02;
        internal const int MapAnonymous = 0x20;
        internal const int MapNoReserve = 0x4000;
        internal const int MapFixed = 0x10;
        internal const int EInval = 22;
        internal const int MadvDontNeed = 4;
        internal const int MadvPopulateWrite = 23;
        internal const int MadvDontNeedLocked = 24;

        /// <summary>mmap's MAP_FAILED, (void*)-1.</summary>
        internal static readonly nint MapFailed = -1;

        [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
        internal static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

        [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
        internal static partial int Munmap(nint address, nuint length);

        [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
        internal static partial int Madvise(nint address, nuint length, int advice);
    }
}
