using System.Runtime.InteropServices;
using ZramDaemon.Native;

namespace ZramDaemon.Safety;

/// <summary>
/// Pins the daemon's memory so that serving swap never waits on swap: mlockall(MCL_CURRENT | MCL_FUTURE |
/// MCL_ONFAULT). Every page the daemon has touched or will touch stays resident. MCL_ONFAULT (Linux 4.4) is what
/// makes this affordable: without it every mapping would be faulted in whole when it is made (the pool's 64 MiB
/// arenas, the GC's reservations, every thread stack: about 150 MB more RSS at start, measured), and pages the
/// pool gives back would be faulted straight in again. The kernel refuses MADV_DONTNEED on locked memory, so the
/// pool releases its pages with MADV_DONTNEED_LOCKED (Linux 5.18), or by remapping them on older kernels (ZsAlloc
/// MemoryMap.Release).
/// Needs CAP_IPC_LOCK (or a large enough RLIMIT_MEMLOCK); without it we warn and run unlocked.
/// </summary>
internal static class MemoryLock
{
    /// <summary>Returns null on success, or why it failed (the errno text).</summary>
    public static string? LockAll()
    {
        if (Interop.Libc.MLockAll(Interop.Libc.McCurrent | Interop.Libc.McFuture | Interop.Libc.McOnFault) == 0)
        {
            return null;
        }

        return Marshal.GetLastPInvokeErrorMessage();
    }
}
