using System.Runtime.InteropServices;
using ZramDaemon.Native;

namespace ZramDaemon.Safety;

/// <summary>
/// Pins the daemon's memory so that serving swap never waits on swap. mlockall(MCL_CURRENT | MCL_FUTURE)
/// is called before the devices exist: what is mapped now (code, runtime, the GC heap) is faulted in and
/// locked, and every later mapping is locked as it is made. Needs CAP_IPC_LOCK (or a large enough
/// RLIMIT_MEMLOCK); without it we warn and run unlocked rather than refuse to start.
/// </summary>
internal static class MemoryLock
{
    /// <summary>Returns null on success, or why it failed (the errno text).</summary>
    public static string? LockAll()
    {
        if (Interop.Libc.MLockAll(Interop.Libc.McCurrent | Interop.Libc.McFuture) == 0)
        {
            return null;
        }

        return Marshal.GetLastPInvokeErrorMessage();
    }
}
