using System.Runtime.InteropServices;

namespace ZsAlloc.Native;

/// <summary>
/// Checked wrappers over mmap/madvise/munmap for anonymous, private, page-aligned regions. Every call checks
/// that the address and length are page-aligned and non-empty before the kernel sees them, and turns a
/// failure into an exception that carries errno, so a bad argument can never silently release the wrong range.
/// Public for the daemon's own tables that give memory back (its MappedArray), so that one piece of code releases
/// pages, locked or not.
/// </summary>
public static class MemoryMap
{
    public const int PageSize = 4096;

    /// <summary>Maps <paramref name="length"/> bytes of zero-filled memory. MAP_NORESERVE: only touched pages count.</summary>
    public static nint Map(long length)
    {
        CheckLength(length);
        nint address = Interop.Libc.Mmap(0, (nuint)length, Interop.Libc.ProtRead | Interop.Libc.ProtWrite,
            Interop.Libc.MapPrivate | Interop.Libc.MapAnonymous | Interop.Libc.MapNoReserve, -1, 0);
        if (address == Interop.Libc.MapFailed)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new OutOfMemoryException($"mmap of {length} bytes failed: errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)}).");
        }

        return address;
    }

    /// <summary>Gives the pages of a range back to the OS: RSS falls, the range stays mapped and reads as zeros.
    /// MADV_DONTNEED first; the kernel refuses it (EINVAL) on locked memory, which is what a daemon that backs
    /// swap runs with (mlockall), so then MADV_DONTNEED_LOCKED (Linux 5.18), and where that is unknown too the range
    /// is replaced by a fresh anonymous mapping (mmap MAP_FIXED), which drops the old pages just the same and, under
    /// MCL_ONFAULT, is locked again only when touched. The first advice that works is remembered: a locked daemon
    /// releases pages on every compaction and drain, and the refused call cost a system call each time, the mapping
    /// one the mmap lock for writing, which every page fault of the process waits for.</summary>
    public static void Release(nint address, long length)
    {
        CheckRange(address, length);
        int mode = ReleaseMode;
        if (mode != ReleaseByMapping)
        {
            int advice = mode == ReleaseDontNeed ? Interop.Libc.MadvDontNeed : Interop.Libc.MadvDontNeedLocked;
            if (Interop.Libc.Madvise(address, (nuint)length, advice) == 0)
            {
                return;
            }

            int errno = Marshal.GetLastPInvokeError();
            if (errno != Interop.Libc.EInval)
            {
                throw new InvalidOperationException($"madvise({(mode == ReleaseDontNeed ? "MADV_DONTNEED" : "MADV_DONTNEED_LOCKED")}) of {length} bytes at 0x{address:x} failed: errno {errno}.");
            }

            // Locked memory (or, for MADV_DONTNEED_LOCKED, a kernel before 5.18): the next advice, from now on (a
            // racing release may have moved it on already, and it never moves back).
            Interlocked.CompareExchange(ref _releaseMode, mode + 1, mode);
            Release(address, length);
            return;
        }

        nint replaced = Interop.Libc.Mmap(address, (nuint)length, Interop.Libc.ProtRead | Interop.Libc.ProtWrite,
            Interop.Libc.MapPrivate | Interop.Libc.MapAnonymous | Interop.Libc.MapNoReserve | Interop.Libc.MapFixed, -1, 0);
        if (replaced != address)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new InvalidOperationException($"mmap(MAP_FIXED) to release {length} bytes of locked memory at 0x{address:x} failed: errno {errno}.");
        }
    }

    internal const int ReleaseDontNeed = 0;
    internal const int ReleaseDontNeedLocked = 1;
    internal const int ReleaseByMapping = 2;

    // How Release gives pages back; it moves forward once the kernel has refused the previous way. Every way
    // works on memory that is not locked, so a test may set any of them while others release pages.
    private static int _releaseMode = ReleaseDontNeed;

    /// <summary>The way <see cref="Release"/> gives pages back now (tests set it to reach each one on any kernel).</summary>
    internal static int ReleaseMode
    {
        get => Volatile.Read(ref _releaseMode);
        set => Volatile.Write(ref _releaseMode, value);
    }

    /// <summary>Faults a range's pages in writable now (MADV_POPULATE_WRITE), as a write to each would, without
    /// changing what they hold; so that a later write under a lock finds them resident. Best effort: false where the
    /// kernel cannot (before Linux 5.14, or out of memory), and the writes then fault the pages in themselves.</summary>
    public static bool Populate(nint address, long length)
    {
        CheckRange(address, length);
        return Interop.Libc.Madvise(address, (nuint)length, Interop.Libc.MadvPopulateWrite) == 0;
    }

    public static void Unmap(nint address, long length)
    {
        CheckRange(address, length);
        if (Interop.Libc.Munmap(address, (nuint)length) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new InvalidOperationException($"munmap of {length} bytes at 0x{address:x} failed: errno {errno}.");
        }
    }

    private static void CheckRange(nint address, long length)
    {
        if (address == 0 || (address & (PageSize - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(address), $"0x{address:x} is not a page-aligned address.");
        }

        CheckLength(length);
    }

    private static void CheckLength(long length)
    {
        if (length <= 0 || (length & (PageSize - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, "The length must be a positive multiple of the page size.");
        }
    }
}
