using Microsoft.Extensions.Logging;
using ZramDaemon.Configuration;
using ZramDaemon.Native;
using ZramDaemon.Safety;

namespace ZramDaemon.Hosting;

/// <summary>
/// Makes the process fit to back swap, before any device or thread exists:
/// PR_SET_IO_FLUSHER on the main thread first, then the same command again so that every thread of the process
/// inherits it (Linux copies a thread's flags to the threads it creates, and keeps them across execve; the NBD
/// connection threads, which serve every request, mark themselves too through NbdServerOptions.IoThreadStarted),
/// then
/// mlockall, then oom_score_adj -1000. Each failure is a warning that says what to do, never a refusal to start.
/// </summary>
internal static partial class SwapSafety
{
    /// <summary>Call first thing in the daemon. Returns null on success. When the flag was not set yet and setting
    /// it works, this runs the same command again (<see cref="ReexecAsIoFlusher"/>) and does not return.</summary>
    public static string? MarkProcessAsIoFlusher()
    {
        if (IoThread.IsCurrentIoFlusher())
        {
            return null;
        }

        string? failure = null;
        IoThread.FailureReporter = why => failure = why;
        bool marked = IoThread.MarkCurrentAsIoFlusher();
        IoThread.FailureReporter = null;
        if (marked)
        {
            ReexecAsIoFlusher();
        }

        return failure;
    }

    /// <summary>
    /// The runtime starts threads of its own (finalizer, tiered compilation, ...) before Main, and a thread's
    /// flags pass only to the threads it creates afterwards, so those stay ordinary threads. PR_SET_IO_FLUSHER
    /// survives execve, so the marked main thread runs the same command again: every thread of the new image
    /// descends from it. Seen in the VM test before this: the tiered-compilation thread, in reclaim, writing pages
    /// out to the swap device this daemon serves while holding the process's mmap_lock. If exec fails, the
    /// daemon goes on as it is (the main thread and the threads it starts are flushers).
    /// </summary>
    private static void ReexecAsIoFlusher()
    {
        string commandLine;
        try
        {
            commandLine = File.ReadAllText("/proc/self/cmdline");
        }
        catch (IOException)
        {
            return;
        }

        // NUL-separated and NUL-terminated; empty arguments in between are kept.
        string[] parts = commandLine.Split('\0');
        string?[] argv = new string?[parts.Length];
        Array.Copy(parts, argv, parts.Length - 1);
        argv[^1] = null;

        // execve sets SIGHUP, handled here, back to its default for the new image's start, before its Main can handle it
        // again; an ignored signal stays ignored (HangupSignal takes it over). If exec fails, it stays ignored, unlogged.
        Interop.Libc.Signal(Interop.Libc.SigHup, Interop.Libc.SigIgn);
        Interop.Libc.Execv("/proc/self/exe", argv);
    }

    public static void Apply(ZramdConfiguration config, bool isRoot, string? ioFlusherFailure, ILogger logger)
    {
        if (ioFlusherFailure is null)
        {
            LogIoFlusher(logger);
        }
        else if (isRoot)
        {
            LogIoFlusherFailed(logger, ioFlusherFailure);
        }
        else
        {
            LogIoFlusherNotRoot(logger, ioFlusherFailure);
        }

        // Before mlockall, so that what it loads is locked too.
        AssemblyPreload.LoadForServing();
        if (config.LockMemory)
        {
            string? why = MemoryLock.LockAll();
            if (why is null)
            {
                LogLocked(logger);
            }
            else
            {
                LogLockFailed(logger, why);
            }
        }
        else
        {
            LogNotLocked(logger);
        }

        if (isRoot)
        {
            string? why = OomScore.SetNeverKill();
            if (why is null)
            {
                LogOomScore(logger, OomScore.NeverKill);
            }
            else
            {
                LogOomScoreFailed(logger, why);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "I/O threads are PR_SET_IO_FLUSHER: serving swap never waits on reclaim that waits on us")]
    private static partial void LogIoFlusher(ILogger logger);

    [LoggerMessage(Level = LogLevel.Warning, Message = "prctl(PR_SET_IO_FLUSHER) failed ({Why}): under memory pressure serving swap may deadlock; zramd needs CAP_SYS_RESOURCE and Linux 5.6 or later")]
    private static partial void LogIoFlusherFailed(ILogger logger, string why);

    [LoggerMessage(Level = LogLevel.Information, Message = "not root: I/O threads are not PR_SET_IO_FLUSHER ({Why}); do not use this instance for swap")]
    private static partial void LogIoFlusherNotRoot(ILogger logger, string why);

    [LoggerMessage(Level = LogLevel.Information, Message = "memory locked (mlockall MCL_CURRENT|MCL_FUTURE|MCL_ONFAULT): the daemon's own pages are never swapped out")]
    private static partial void LogLocked(ILogger logger);

    [LoggerMessage(Level = LogLevel.Warning, Message = "could not lock memory (mlockall: {Why}): the daemon's own pages may be swapped out to the device it serves; run as root or give it CAP_IPC_LOCK and LimitMEMLOCK=infinity, or set lock-memory = no to silence this")]
    private static partial void LogLockFailed(ILogger logger, string why);

    [LoggerMessage(Level = LogLevel.Information, Message = "memory not locked (lock-memory = no)")]
    private static partial void LogNotLocked(ILogger logger);

    [LoggerMessage(Level = LogLevel.Information, Message = "oom_score_adj = {Score}: the OOM killer never picks the daemon")]
    private static partial void LogOomScore(ILogger logger, int score);

    [LoggerMessage(Level = LogLevel.Warning, Message = "could not set oom_score_adj to -1000 ({Why}): the OOM killer may kill zramd and lose every page it holds; set OOMScoreAdjust=-1000 in the unit")]
    private static partial void LogOomScoreFailed(ILogger logger, string why);
}
