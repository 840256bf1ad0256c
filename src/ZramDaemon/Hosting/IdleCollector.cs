using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace ZramDaemon.Hosting;

/// <summary>
/// Runs a full, compacting GC once the daemon has allocated some managed memory while serving and then gone quiet.
/// Why: requests allocate nothing, so the only garbage is what connections, control verbs and logging leave, and a
/// daemon that allocates nothing runs no GC: that garbage stays resident (and locked, under mlockall) up to the gen0
/// budget, and the runtime's records of exited threads stay with it, freed only after a GC. The next burst then
/// allocates in new memory rather than the old. Measured (200 connections at once, each handshake, write, read,
/// disconnect; RssAnon 12 s after each wave): 23, 41, 44, 49 MiB after four waves without, 24, 30, 31, 32 with it
/// (about 6-10 ms a collection, under 3 MiB of managed heap left). Not the runtime's <c>GCgen0size</c>, which would
/// bound the garbage too: it is read only from the environment.
/// </summary>
internal sealed partial class IdleCollector
{
    /// <summary>How often the allocation counter is read.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);

    /// <summary>Allocated since the last collection before one is worth its pause.</summary>
    public const long Threshold = 2 << 20;

    /// <summary>At most this much allocated over the last interval counts as quiet (a status poll, a log line).</summary>
    public const long QuietBytes = 256 << 10;

    private readonly ILogger _logger;
    private long _sinceBase;
    private long _lastRead;
    private int _lastGen0;

    /// <summary>Starts counting from what has been allocated so far (the start's garbage is not counted: one GC after
    /// the start left RSS 1 MiB higher, not lower).</summary>
    public IdleCollector(ILogger logger, long allocated, int gen0Collections)
    {
        _logger = logger;
        _sinceBase = allocated;
        _lastRead = allocated;
        _lastGen0 = gen0Collections;
    }

    /// <summary>Whether to collect now, given the runtime's allocation counter and gen0 collection count; a GC the
    /// runtime ran itself since the last reading starts the count again.</summary>
    public bool ShouldCollect(long allocated, int gen0Collections)
    {
        if (gen0Collections != _lastGen0)
        {
            _lastGen0 = gen0Collections;
            _sinceBase = allocated;
        }

        bool quiet = allocated - _lastRead <= QuietBytes;
        _lastRead = allocated;
        return quiet && allocated - _sinceBase >= Threshold;
    }

    /// <summary>Reads the counters every <see cref="Interval"/> until <paramref name="ct"/> is cancelled.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(Interval);
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                long allocated = GC.GetTotalAllocatedBytes(precise: false);
                if (ShouldCollect(allocated, GC.CollectionCount(0)))
                {
                    Collect(allocated - _sinceBase);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private void Collect(long garbage)
    {
        long started = Stopwatch.GetTimestamp();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        LogCollected(garbage >> 10, Stopwatch.GetElapsedTime(started).TotalMilliseconds, GC.GetTotalMemory(forceFullCollection: false) >> 10);

        // Our own collection (and the log line) counted from here.
        _lastGen0 = GC.CollectionCount(0);
        _sinceBase = _lastRead = GC.GetTotalAllocatedBytes(precise: false);
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "idle: collected the managed heap after {AllocatedKib} KiB allocated while serving, in {Milliseconds:F1} ms; {HeapKib} KiB left")]
    private partial void LogCollected(long allocatedKib, double milliseconds, long heapKib);
}
