using System.Runtime.InteropServices;

namespace Nbd.Native;

/// <summary>The few libc calls .NET does not expose the way we need them (the type and identity of a Unix socket file and a bind the runtime does not know of, what a descriptor systemd passed is, request
/// buffers that go back to the OS when their connection ends, futex(2) for <see cref="Threading.FutexLock"/> and the read turn's watchdog, the scheduling policy of a serving thread, a receive that does not block).</summary>
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

    internal const int SchedOther = 0;
    internal const int SchedBatch = 3;

    /// <summary>sched_setscheduler(2) for the calling thread (pid 0) with priority 0, the only one SCHED_OTHER and
    /// SCHED_BATCH take; either may be set without privileges.</summary>
    [LibraryImport(LibraryName, EntryPoint = "sched_setscheduler", SetLastError = true)]
    internal static partial int SchedSetScheduler(int pid, int policy, in int priority);

    // futex(2) on a process-private word: no shared-memory key lookup.
    private const int FutexWaitPrivate = 0 | 128;
    private const int FutexWakePrivate = 1 | 128;

    private static long FutexSyscall => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => 202,
        Architecture.Arm64 or Architecture.RiscV64 or Architecture.LoongArch64 => 98,
        _ => throw new PlatformNotSupportedException("futex(2): unknown system call number on " + RuntimeInformation.ProcessArchitecture),
    };

    [LibraryImport(LibraryName, EntryPoint = "chmod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int Chmod(string path, uint mode);

    /// <summary>(uid_t)-1 and (gid_t)-1: chown leaves that id as it is.</summary>
    internal const uint NoChange = uint.MaxValue;

    /// <summary>chown(2); uid_t and gid_t are unsigned 32-bit.</summary>
    [LibraryImport(LibraryName, EntryPoint = "chown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int Chown(string path, uint owner, uint group);

    // <sys/stat.h>: the file type bits of st_mode (a stale socket file may be removed, any other file never).
    internal const uint FileTypeMask = 0xF000;
    internal const uint SocketFileType = 0xC000;

    internal const ushort AfUnix = 1;

    /// <summary>sun_path of struct sockaddr_un: a path of at most 107 bytes and its NUL.</summary>
    internal const int SunPathLength = 108;

    /// <summary>bind(2), for a Unix socket's path the runtime must not know (<see cref="UnixSocketFile"/>).</summary>
    [LibraryImport(LibraryName, EntryPoint = "bind", SetLastError = true)]
    internal static partial int Bind(System.Net.Sockets.SafeSocketHandle socket, ReadOnlySpan<byte> address, uint length);

    /// <summary>statx(2) of a path itself (a final symlink not followed), in one layout on every architecture (struct
    /// stat's differs: st_mode is at 24 on x86-64 and ppc64le, at 16 on arm64).</summary>
    [LibraryImport(LibraryName, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int dirFd, string path, int flags, uint mask, Span<byte> statxBuffer);

    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxType = 0x1;
    private const uint StatxIno = 0x100;

    /// <summary>The file type bits of the path's mode (a link's own), its device and inode; false if it cannot be looked
    /// at (missing, unreachable: errno says why).</summary>
    internal static bool TryLStat(string path, out uint fileType, out ulong device, out ulong inode)
    {
        Span<byte> statx = stackalloc byte[256];
        if (Statx(AtFdCwd, path, AtSymlinkNoFollow, StatxType | StatxIno, statx) != 0)
        {
            fileType = 0;
            device = inode = 0;
            return false;
        }

        // struct statx: stx_mode (u16) at 28, stx_ino (u64) at 32, stx_dev_major and stx_dev_minor (u32 each) at 136.
        fileType = MemoryMarshal.Read<ushort>(statx[28..]) & FileTypeMask;
        inode = MemoryMarshal.Read<ulong>(statx[32..]);
        device = ((ulong)MemoryMarshal.Read<uint>(statx[136..]) << 32) | MemoryMarshal.Read<uint>(statx[140..]);
        return true;
    }

    /// <summary>Sleeps while <paramref name="word"/> holds <paramref name="expected"/> (returns at once if it does
    /// not, on a wake-up, or on a signal; the caller looks again either way). The word must not move: it is an
    /// element of a pinned array.</summary>
    internal static void FutexWait(ref int word, int expected) => Syscall(FutexSyscall, ref word, FutexWaitPrivate, expected, 0, 0, 0);

    /// <summary>As <see cref="FutexWait(ref int, int)"/>, but for at most <paramref name="nanoseconds"/> (a relative
    /// timeout, CLOCK_MONOTONIC).</summary>
    internal static void FutexWait(ref int word, int expected, long nanoseconds)
    {
        var timeout = new Timespec(nanoseconds / 1_000_000_000, nanoseconds % 1_000_000_000);
        Syscall(FutexSyscall, ref word, FutexWaitPrivate, expected, in timeout, 0, 0);
    }

    /// <summary>Wakes up to <paramref name="count"/> threads sleeping on <paramref name="word"/>.</summary>
    internal static void FutexWake(ref int word, int count) => Syscall(FutexSyscall, ref word, FutexWakePrivate, count, 0, 0, 0);

    // long syscall(long number, ...): the futex arguments are all integers or pointers, which the x86-64 and
    // AArch64 calling conventions pass in the same registers whether the callee is variadic or not.
    [LibraryImport(LibraryName, EntryPoint = "syscall")]
    private static partial long Syscall(long number, ref int word, int operation, int value, nint timeout, nint word2, int value3);

    [LibraryImport(LibraryName, EntryPoint = "syscall")]
    private static partial long Syscall(long number, ref int word, int operation, int value, in Timespec timeout, nint word2, int value3);

    // <sys/socket.h>, <errno.h>: what a descriptor systemd passed is, before it is taken for a listening socket.
    internal const int SolSocket = 1;
    internal const int SoType = 3;
    internal const int SoAcceptConn = 30;
    internal const int SockStream = 1;
    internal const int SockDgram = 2;
    internal const int SockSeqPacket = 5;
    internal const int Ebadf = 9;
    internal const int Enotsock = 88;

    internal const int FGetFd = 1;
    internal const int FdCloexec = 1;

    /// <summary>fcntl(2) with an int argument (F_GETFD ignores it). Variadic in C, but an int travels in the same
    /// register either way on x86-64 and AArch64.</summary>
    [LibraryImport(LibraryName, EntryPoint = "fcntl", SetLastError = true)]
    internal static partial int Fcntl(int fd, int command, int argument);

    /// <summary>getsockopt(2) of an int option (socklen_t is 32-bit).</summary>
    [LibraryImport(LibraryName, EntryPoint = "getsockopt", SetLastError = true)]
    internal static partial int GetSockOpt(int fd, int level, int option, out int value, ref uint length);

    internal const int MsgDontWait = 0x40;

    /// <summary>recv(2) with flags (MSG_DONTWAIT, which .NET's SocketFlags cannot express); the buffer is pinned
    /// for the call. errno is not kept: the one caller treats every failure as "nothing to read now".</summary>
    [LibraryImport(LibraryName, EntryPoint = "recv")]
    internal static partial nint Recv(SafeHandle fd, ref byte buffer, nuint length, int flags);

    // accept4(2), poll(2), eventfd(2): SocketAcceptor's accept that never asks for the peer's address.
    internal const int FGetFl = 3;
    internal const int FSetFl = 4;
    internal const int ONonBlock = 0x800;
    internal const int SockCloexec = 0x80000;
    internal const int EfdCloexec = 0x80000;
    internal const int EfdNonBlock = 0x800;
    internal const short PollIn = 0x1;
    internal const int Eintr = 4;
    internal const int Eagain = 11;

    /// <summary>accept4(2) with no address buffer: the peer's address is never read.</summary>
    [LibraryImport(LibraryName, EntryPoint = "accept4", SetLastError = true)]
    internal static partial int Accept4(SafeHandle fd, nint address, nint addressLength, int flags);

    [LibraryImport(LibraryName, EntryPoint = "poll", SetLastError = true)]
    internal static partial int Poll(Span<PollFd> fds, nuint count, int timeoutMilliseconds);

    [LibraryImport(LibraryName, EntryPoint = "eventfd", SetLastError = true)]
    internal static partial int EventFd(uint initialValue, int flags);

    /// <summary>write(2) of one 8-byte counter increment to an eventfd.</summary>
    [LibraryImport(LibraryName, EntryPoint = "write", SetLastError = true)]
    internal static partial nint Write(SafeHandle fd, in ulong value, nuint length);

    /// <summary>struct pollfd.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct PollFd
    {
        public int Fd;
        public short Events;
        public short ReturnedEvents;
    }

    /// <summary>struct timespec on 64-bit Linux.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private readonly record struct Timespec(long Seconds, long Nanoseconds);
}
