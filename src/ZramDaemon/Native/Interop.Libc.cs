using System.Runtime.InteropServices;

namespace ZramDaemon.Native;

/// <summary>The libc calls the daemon needs that .NET does not expose: swap safety (and the re-exec it needs), binding an
/// NBD connection to a kernel /dev/nbdX, the background threads' priority, socket-group names, backing files (which file a path reaches, locking them, punching holes, leaving the page cache).</summary>
internal static partial class Interop
{
    internal static partial class Libc
    {
        private const string LibraryName = "libc";

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

        // <signal.h>
        internal const int SigHup = 1;
        internal const nint SigDfl = 0;
        internal const nint SigIgn = 1;

        /// <summary>signal(2), for SIG_DFL and SIG_IGN only (a managed handler goes through PosixSignalRegistration).</summary>
        [LibraryImport(LibraryName, EntryPoint = "signal", SetLastError = true)]
        internal static partial nint Signal(int signal, nint handler);

        /// <summary>execv(2): <paramref name="argv"/> ends with a null element. Returns only on failure.</summary>
        [LibraryImport(LibraryName, EntryPoint = "execv", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int Execv(string path, string?[] argv);

        // <unistd.h>: on Linux a nice value belongs to a thread, and nice(2) changes the calling thread's alone (the
        // recompressor lowers its own so that it gets about its CPU budget on a busy CPU, see Recompressor.NiceFor).
        internal const int NiceLowest = 19;

        [LibraryImport(LibraryName, EntryPoint = "nice", SetLastError = true)]
        internal static partial int Nice(int increment);

        // <time.h>: the recompressor counts its CPU budget in its own thread's CPU time.
        internal const int ClockThreadCpuTimeId = 3;

        /// <summary>clock_gettime(2) into a struct timespec: <paramref name="timeSpec"/> is two longs, seconds and
        /// nanoseconds (64-bit Linux).</summary>
        [LibraryImport(LibraryName, EntryPoint = "clock_gettime", SetLastError = true)]
        internal static partial int ClockGetTime(int clockId, Span<long> timeSpec);

        // <linux/falloc.h>: a device's backing file gives the space of freed blocks back to the filesystem.
        internal const int FallocFlKeepSize = 1;
        internal const int FallocFlPunchHole = 2;

        [LibraryImport(LibraryName, EntryPoint = "fallocate", SetLastError = true)]
        internal static partial int Fallocate(SafeHandle fd, int mode, long offset, long length);

        // <fcntl.h>: a backing file's pages leave the page cache once written (the kernel's zram writes back with a bio).
        internal const uint SyncFileRangeWaitBefore = 1;
        internal const uint SyncFileRangeWrite = 2;
        internal const uint SyncFileRangeWaitAfter = 4;
        internal const int PosixFadviseDontNeed = 4;

        [LibraryImport(LibraryName, EntryPoint = "sync_file_range", SetLastError = true)]
        internal static partial int SyncFileRange(SafeHandle fd, long offset, long length, uint flags);

        /// <summary>posix_fadvise(2): returns the error number itself (0: done), errno is not set.</summary>
        [LibraryImport(LibraryName, EntryPoint = "posix_fadvise")]
        internal static partial int PosixFadvise(SafeHandle fd, long offset, long length, int advice);

        /// <summary>realpath(3) into a buffer it allocates (null on failure, errno set), to be given to free: the path
        /// with every symlink and <c>..</c> resolved as the kernel resolves them.</summary>
        [LibraryImport(LibraryName, EntryPoint = "realpath", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial nint RealPath(string path, nint resolved);

        [LibraryImport(LibraryName, EntryPoint = "free")]
        internal static partial void Free(nint pointer);

        /// <summary>statx(2), the one stat zramd makes: which file a path reaches (writeback-file and the daemon's own
        /// files compared), and what a backing file is (its type, owner, links), in a layout that is the same on every
        /// architecture, unlike struct stat's (fields in native byte order). <paramref name="dirFd"/>: a directory
        /// (<see cref="AtFdCwd"/>), or with <see cref="AtEmptyPath"/> and an empty path, the file itself. A final
        /// symlink is followed.</summary>
        [LibraryImport(LibraryName, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int Statx(SafeHandle dirFd, string path, int flags, uint mask, Span<byte> statxBuffer);

        [LibraryImport(LibraryName, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int Statx(int dirFd, string path, int flags, uint mask, Span<byte> statxBuffer);

        internal const int AtFdCwd = -100;
        internal const int AtEmptyPath = 0x1000;
        internal const uint StatxBasicStats = 0x7FF;
        internal const int StatxBufferSize = 256;
        internal const int StatxNlinkOffset = 16; // u32
        internal const int StatxUidOffset = 20; // u32
        internal const int StatxModeOffset = 28; // u16
        internal const int StatxInodeOffset = 32; // u64
        internal const int StatxSizeOffset = 40; // u64
        internal const int StatxDeviceMajorOffset = 136; // u32, then the minor

        // <sys/stat.h>: the file type bits of the mode.
        internal const uint FileTypeMask = 0xF000;
        internal const uint RegularFileType = 0x8000;

        [LibraryImport(LibraryName, EntryPoint = "geteuid")]
        internal static partial uint GetEuid();

        /// <summary>fsync(2): the backing file's size and trailer on disk before it is used, so that after a power cut
        /// the file left is one a zramd made, which the next start takes back.</summary>
        [LibraryImport(LibraryName, EntryPoint = "fsync", SetLastError = true)]
        internal static partial int Fsync(SafeHandle fd);

        // <fcntl.h>, <sys/file.h>: a device's backing file is opened and locked by us, not by FileStream, whose lock the
        // runtime leaves out (and then truncates at open) when DOTNET_SYSTEM_IO_DISABLEFILELOCKING is set.
        internal const int OCreat = 0x40;
        internal const uint ModeOwnerReadWrite = 0x180; // 0600
        internal const int LockExclusive = 2;
        internal const int LockNonBlocking = 4;
        internal const int EWouldBlock = 11;

        /// <summary>open(2) with a mode, for O_CREAT (the mode is open's variadic third argument, passed as an int in a
        /// register on x86-64 and arm64 Linux alike).</summary>
        [LibraryImport(LibraryName, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int Open(string path, int flags, uint mode);

        [LibraryImport(LibraryName, EntryPoint = "flock", SetLastError = true)]
        internal static partial int Flock(SafeHandle fd, int operation);

        // <grp.h>: socket-group names are looked up once, through NSS (files, LDAP, sssd, systemd), as chown(1) does.
        internal const int ERange = 34;

        /// <summary>struct group on 64-bit Linux: gr_name, gr_passwd (pointers), gr_gid (gid_t, padded to 8), gr_mem.</summary>
        internal const int GroupStructSize = 32;
        internal const int GroupIdOffset = 16;

        /// <summary>getgrnam_r(3): returns 0 and a null <paramref name="result"/> when there is no such group, or an
        /// errno (ERANGE: <paramref name="buffer"/> is too small for the entry's strings).</summary>
        [LibraryImport(LibraryName, EntryPoint = "getgrnam_r", StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int GetGroupByName(string name, Span<byte> group, Span<byte> buffer, nuint bufferLength, out nint result);

        // ---- binding an NBD connection to /dev/nbdX (Attach/): a socketpair, a generic netlink socket
        // (AF_NETLINK has no .NET Socket support) and the nbd ioctls of the fallback path.

        // <sys/socket.h>, <linux/netlink.h>
        internal const int AfUnix = 1;
        internal const int AfNetlink = 16;
        internal const int SockStream = 1;
        internal const int SockRaw = 3;
        internal const int SockCloexec = 0x80000;
        internal const int NetlinkGeneric = 16;

        // <fcntl.h>
        internal const int ORdWr = 2;
        internal const int ORdOnly = 0;
        // On a block device without O_CREAT: fails with EBUSY while the kernel holds it (mounted, swap, a holder).
        internal const int OExcl = 0x80;
        internal const int OCloexec = 0x80000;
        internal const int ONoctty = 0x100;

        // <errno.h>
        internal const int EIntr = 4;
        internal const int ENoEnt = 2;
        internal const int EBusy = 16;
        internal const int ENotTy = 25;
        internal const int EInval = 22;
        internal const int EPerm = 1;

        [LibraryImport(LibraryName, EntryPoint = "socket", SetLastError = true)]
        internal static partial int Socket(int domain, int type, int protocol);

        [LibraryImport(LibraryName, EntryPoint = "socketpair", SetLastError = true)]
        internal static partial int SocketPair(int domain, int type, int protocol, Span<int> fds);

        /// <summary>bind(2) with a struct sockaddr_nl of all zeros but the family: the kernel picks our port id.</summary>
        [LibraryImport(LibraryName, EntryPoint = "bind", SetLastError = true)]
        internal static partial int Bind(int fd, ReadOnlySpan<byte> address, int addressLength);

        [LibraryImport(LibraryName, EntryPoint = "send", SetLastError = true)]
        internal static partial nint Send(int fd, ReadOnlySpan<byte> buffer, nuint length, int flags);

        [LibraryImport(LibraryName, EntryPoint = "recv", SetLastError = true)]
        internal static partial nint Receive(int fd, Span<byte> buffer, nuint length, int flags);

        [LibraryImport(LibraryName, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int Open(string path, int flags);

        [LibraryImport(LibraryName, EntryPoint = "close", SetLastError = true)]
        internal static partial int Close(int fd);

        /// <summary>ioctl(2) with an integer argument (every nbd ioctl takes one or none).</summary>
        [LibraryImport(LibraryName, EntryPoint = "ioctl", SetLastError = true)]
        internal static partial int Ioctl(int fd, nuint request, nuint argument);

        [LibraryImport(LibraryName, EntryPoint = "strerror")]
        private static partial nint StrError(int errno);

        internal static string Describe(int errno) => Marshal.PtrToStringUTF8(StrError(errno)) ?? $"errno {errno}";
    }
}
