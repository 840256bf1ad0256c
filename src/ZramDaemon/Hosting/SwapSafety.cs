using Microsoft.Extensions.Logging;
using ZramDaemon.Configuration;
using ZramDaemon.Safety;

namespace ZramDaemon.Hosting;

/// <summary>
/// Makes the process fit to back swap, before any device or thread exists:
/// PR_SET_IO_FLUSHER on the main thread first (Linux copies a thread's flags to the threads it creates, so every
/// thread the runtime starts later inherits it; the NBD connection threads, which serve every request, mark
/// themselves too through NbdServerOptions.IoThreadStarted), then
/// mlockall, then oom_score_adj -1000. Each failure is a warning that says what to do, never a refusal to start.
/// </summary>
internal static partial class SwapSafety
{
    /// <summary>Call first thing in the daemon, before anything can start a thread. Returns null on success.</summary>
    public static string? MarkProcessAsIoFlusher()
    {
        string? failure = null;
        IoThread.FailureReporter = why => failure = why;
        IoThread.MarkCurrentAsIoFlusher();
        IoThread.FailureReporter = null;
        return failure;
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
