using System.Diagnostics;
using Microsoft.Win32.SafeHandles;

namespace Nbd.Threading;

/// <summary>
/// Whether a CPU is free right now: the machine's runnable threads (the fourth field of /proc/loadavg, "3/512":
/// running or waiting for a CPU, the caller included) are no more than its CPUs. Busy-polling a socket is free
/// only then; with more runnable threads than CPUs the poller takes the CPU from a thread that has work (on a
/// loaded two-core machine polling halved two-connection throughput at queue depth 1), so it must not poll.
/// The file is read at most once a millisecond (pread, about 2 us); between reads every caller gets the last answer.
/// Where /proc/loadavg cannot be read the answer is always no.
/// </summary>
internal sealed class RunQueue
{
    private static readonly long RefreshTicks = Stopwatch.Frequency / 1000;
    private readonly SafeFileHandle? _loadAvg;
    private readonly int _cpus;
    private long _nextRead;
    private bool _idleCpu;

    /// <param name="path">/proc/loadavg, or a file shaped like it (tests).</param>
    /// <param name="cpus">The CPUs to compare the running count with.</param>
    internal RunQueue(string path, int cpus)
    {
        _loadAvg = Open(path);
        _cpus = cpus;
    }

    /// <summary>The machine's run queue, shared by every session.</summary>
    public static RunQueue Machine { get; } = new("/proc/loadavg", Environment.ProcessorCount);

    public bool HasIdleCpu()
    {
        long now = Stopwatch.GetTimestamp();
        if (now >= Volatile.Read(ref _nextRead))
        {
            Refresh(now);
        }

        return Volatile.Read(ref _idleCpu);
    }

    /// <summary>The running count of a /proc/loadavg line ("0.69 1.04 1.62 3/512 12345" gives 3).</summary>
    internal static bool TryParseRunning(ReadOnlySpan<byte> line, out int running)
    {
        running = 0;
        int fields = 0;
        int i = 0;
        while (fields < 3 && i < line.Length)
        {
            if (line[i++] == (byte)' ')
            {
                fields++;
            }
        }

        int start = i;
        while (i < line.Length && (uint)(line[i] - '0') <= 9)
        {
            if (running > 1_000_000)
            {
                return false;
            }

            running = (running * 10) + (line[i++] - '0');
        }

        return fields == 3 && i > start && i < line.Length && line[i] == (byte)'/';
    }

    private void Refresh(long now)
    {
        Volatile.Write(ref _nextRead, now + RefreshTicks);
        bool idle = false;
        if (_loadAvg is not null)
        {
            Span<byte> line = stackalloc byte[96];
            try
            {
                int n = RandomAccess.Read(_loadAvg, line, 0);
                idle = TryParseRunning(line[..n], out int running) && running <= _cpus;
            }
            catch (IOException)
            {
            }
        }

        Volatile.Write(ref _idleCpu, idle);
    }

    private static SafeFileHandle? Open(string path)
    {
        try
        {
            return File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
