using System.Runtime.InteropServices;
using ZramDaemon.Native;

namespace ZramDaemon.Safety;

/// <summary>
/// Threads that serve block I/O for swap. The kernel's own I/O path never recurses into reclaim; a userspace
/// server must ask for the same: prctl(PR_SET_IO_FLUSHER) (Linux 5.6, needs CAP_SYS_RESOURCE) makes this
/// thread's allocations NOIO, so serving a swap write can never wait for that same swap write.
/// It is per thread: call <see cref="MarkCurrentAsIoFlusher"/> first thing on every thread that serves I/O,
/// or start those threads with <see cref="Start"/>.
/// </summary>
public static class IoThread
{
    private static int _warned;

    /// <summary>Set by the daemon to report the first failure once (e.g. not root); null: stay quiet.</summary>
    internal static Action<string>? FailureReporter { get; set; }

    /// <summary>Marks the calling thread as an I/O flusher. Returns false (and reports once) when the kernel
    /// refuses, which happens without CAP_SYS_RESOURCE or before Linux 5.6.</summary>
    public static bool MarkCurrentAsIoFlusher()
    {
        if (Interop.Libc.Prctl(Interop.Libc.PrSetIoFlusher, 1, 0, 0, 0) == 0)
        {
            return true;
        }

        string why = Marshal.GetLastPInvokeErrorMessage();
        if (Interlocked.Exchange(ref _warned, 1) == 0)
        {
            FailureReporter?.Invoke(why);
        }

        return false;
    }

    /// <summary>True when the calling thread is marked (PR_GET_IO_FLUSHER).</summary>
    public static bool IsCurrentIoFlusher() => Interop.Libc.Prctl(Interop.Libc.PrGetIoFlusher, 0, 0, 0, 0) == 1;

    /// <summary>Starts a dedicated background thread (not the shared pool) that is an I/O flusher before it
    /// runs <paramref name="body"/>.</summary>
    public static Thread Start(string name, Action body)
    {
        ArgumentNullException.ThrowIfNull(body);
        var thread = new Thread(() =>
        {
            MarkCurrentAsIoFlusher();
            body();
        })
        {
            Name = name,
            IsBackground = true,
        };
        thread.Start();
        return thread;
    }
}
