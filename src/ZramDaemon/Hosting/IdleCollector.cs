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
/// (about 6-10 ms a collection, under 3 MiB of managed heap left). Quiet means little allocated and little CPU used
/// over an interval: the request path allocates nothing, so swap traffic alone would look quiet, and a collection
/// stops the serving threads at their next safe point. Only a full collection the runtime ran itself starts the count
/// again: a gen0 one promotes what the connections still held, which becomes garbage of the older generations.
/// Not the runtime's <c>GCgen0size</c>, which would bound the gen0 garbage: it is read only from the environment.
/// </summary>
internal sealed partial class IdleCollector
{
    /// <summary>How often the counters are read.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);

    /// <summary>Allocated since the last full collection before one is worth its pause.</summary>
    public const long Threshold = 2 << 20;

    /// <summary>At most this much allocated over the last interval counts as quiet (a status poll, a log line).</summary>
    public const long QuietBytes = 256 << 10;

    /// <summary>At most this much CPU time (the process's, all threads) over the last interval counts as quiet: 2% of
    /// one CPU. An idle daemon's device ticks take far less; serving requests far more.</summary>
    public static readonly TimeSpan QuietCpu = Interval / 50;

    private readonly ILogger _logger;
    private long _sinceBase;
    private long _lastRead;
    private int _lastFull;
    private TimeSpan _lastCpu;

    /// <summary>Starts counting from what has been allocated so far (the start's garbage is not counted: one GC after
    /// the start left RSS 1 MiB higher, not lower).</summary>
    public IdleCollector(ILogger logger, long allocated, int fullCollections, TimeSpan cpu)
    {
        _logger = logger;
        _sinceBase = allocated;
        _lastRead = allocated;
        _lastFull = fullCollections;
        _lastCpu = cpu;
    }

    /// <summary>A collector counting from now.</summary>
    public static IdleCollector StartingNow(ILogger logger)
        => new(logger, GC.GetTotalAllocatedBytes(precise: false), GC.CollectionCount(GC.MaxGeneration), Environment.CpuUsage.TotalTime);

    /// <summary>Whether to collect now, given the runtime's allocation counter, its count of full collections and the
    /// process's CPU time; a full collection the runtime ran itself since the last reading starts the count again.</summary>
    public bool ShouldCollect(long allocated, int fullCollections, TimeSpan cpu)
    {
        if (fullCollections != _lastFull)
        {
            _lastFull = fullCollections;
            _sinceBase = allocated;
        }

        bool quiet = allocated - _lastRead <= QuietBytes && cpu - _lastCpu <= QuietCpu;
        _lastRead = allocated;
        _lastCpu = cpu;
        return quiet && allocated - _sinceBase >= Threshold;
    }

    /// <summary>Reads the counters every <see cref="Interval"/> until <paramref name="ct"/> is cancelled. Never throws:
    /// the daemon's stop awaits it.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        try
        {
            using var timer = new PeriodicTimer(Interval);
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                long allocated = GC.GetTotalAllocatedBytes(precise: false);
                if (ShouldCollect(allocated, GC.CollectionCount(GC.MaxGeneration), Environment.CpuUsage.TotalTime))
                {
                    Collect(allocated - _sinceBase);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e)
        {
            LogFailed(e);
        }
    }

    private void Collect(long garbage)
    {
        long started = Stopwatch.GetTimestamp();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        LogCollected(garbage >> 10, Stopwatch.GetElapsedTime(started).TotalMilliseconds, GC.GetTotalMemory(forceFullCollection: false) >> 10);

        // Counted from here: our own collection, the log line and the collection's CPU time.
        _lastFull = GC.CollectionCount(GC.MaxGeneration);
        _sinceBase = _lastRead = GC.GetTotalAllocatedBytes(precise: false);
        _lastCpu = Environment.CpuUsage.TotalTime;
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "idle: collected the managed heap after {AllocatedKib} KiB allocated while serving, in {Milliseconds:F1} ms; {HeapKib} KiB left")]
    private partial void LogCollected(long allocatedKib, double milliseconds, long heapKib);

    [LoggerMessage(Level = LogLevel.Error, Message = "idle collection stopped")]
    private partial void LogFailed(Exception e);
}
