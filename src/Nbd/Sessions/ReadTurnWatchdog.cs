using System.Diagnostics;
using Nbd.Native;

namespace Nbd.Sessions;

/// <summary>
/// One thread per server that makes keeping the read turn safe (<see cref="NbdSession"/>: at queue depth 1 the
/// thread that read a request runs it without waking another reader, and comes back for the turn itself). If
/// that request takes long, say it waits in the device, a request the client sends meanwhile would go unread
/// until it finishes; so every interval (<see cref="NbdServerOptions.ReadTurnWatchdogInterval"/>, 5 ms) this thread
/// looks at each connection, and one whose kept request has run for an interval or more has a sleeping thread woken
/// to read (<see cref="NbdSession.KickIfStalled"/>).
/// A request is therefore never left unread for more than about two intervals because another one is slow.
///
/// It costs nothing per request beyond a timestamp and a look at <see cref="_sleeping"/>: it looks on a timer
/// only while some connection kept its turn within <see cref="IdleAfter"/>, and otherwise sleeps in futex(2)
/// until a connection keeps its turn again (<see cref="Wake"/>). No wake-up is lost: a session publishes its
/// timestamp with a full fence before it reads <see cref="_sleeping"/>, and this thread sets
/// <see cref="_sleeping"/> with a full fence before it looks at the sessions once more and sleeps.
/// </summary>
internal sealed class ReadTurnWatchdog : IDisposable
{
    /// <summary>How often it looks while connections keep their turns, and how long a kept request may run. Each look
    /// is a wake-up that takes a CPU from the client and the reader: every millisecond cost a quiet depth-1 client
    /// about a tenth of its IOPS (docs/nbd.md).</summary>
    internal static readonly TimeSpan DefaultInterval = TimeSpan.FromMilliseconds(5);

    /// <summary>With no turn kept for this long, it stops looking until one is.</summary>
    internal static readonly TimeSpan IdleAfter = TimeSpan.FromMilliseconds(50);

    private static readonly long IdleTicks = (long)(IdleAfter.TotalSeconds * Stopwatch.Frequency);

    // The futex word: 1 while the thread sleeps with no deadline, 0 while it looks on the timer.
    private readonly int[] _sleeping = GC.AllocateArray<int>(1, pinned: true);
    private readonly object _gate = new();
    private readonly Thread _thread;
    private readonly long _intervalTicks;
    private readonly long _intervalNanoseconds;
    private NbdSession[] _sessions = [];
    private volatile bool _disposed;
    private long _kicks;

    public ReadTurnWatchdog(NbdServerOptions options)
    {
        _intervalTicks = (long)(options.ReadTurnWatchdogInterval.TotalSeconds * Stopwatch.Frequency);
        _intervalNanoseconds = (long)(options.ReadTurnWatchdogInterval.TotalMilliseconds * 1_000_000);
        _thread = NbdServer.StartIoThread("read-turn-watch", Run, options);
    }

    /// <summary>Sleeping threads woken so far because a kept request ran long (for tests and logs).</summary>
    public long Kicks => Interlocked.Read(ref _kicks);

    public void Add(NbdSession session)
    {
        lock (_gate)
        {
            _sessions = [.. _sessions, session];
        }
    }

    public void Remove(NbdSession session)
    {
        lock (_gate)
        {
            _sessions = Array.FindAll(_sessions, s => s != session);
        }
    }

    /// <summary>Called by a session after it published a kept turn: wakes this thread if it sleeps with no
    /// deadline. A read of a word that rarely changes, so it stays in every core's cache.</summary>
    public void Wake()
    {
        if (Volatile.Read(ref _sleeping[0]) != 0 && Interlocked.Exchange(ref _sleeping[0], 0) != 0)
        {
            Libc.FutexWake(ref _sleeping[0], 1);
        }
    }

    public void Dispose()
    {
        _disposed = true;
        Interlocked.Exchange(ref _sleeping[0], 0);
        Libc.FutexWake(ref _sleeping[0], 1);
        _thread.Join();
    }

    private void Run()
    {
        while (!_disposed)
        {
            long newest = Look();
            if (Stopwatch.GetTimestamp() - newest < IdleTicks)
            {
                Libc.FutexWait(ref _sleeping[0], 0, _intervalNanoseconds);
                continue;
            }

            Interlocked.Exchange(ref _sleeping[0], 1);
            if (Look() != newest || _disposed)
            {
                // A turn was kept since the first look: its session may have seen 0 and not woken us.
                Interlocked.Exchange(ref _sleeping[0], 0);
                continue;
            }

            Libc.FutexWait(ref _sleeping[0], 1);
        }
    }

    /// <summary>Kicks the sessions whose kept request has run an interval or more; returns the newest time any
    /// session kept its turn.</summary>
    private long Look()
    {
        long now = Stopwatch.GetTimestamp();
        long newest = 0;
        foreach (NbdSession session in Volatile.Read(ref _sessions))
        {
            if (session.KickIfStalled(now, _intervalTicks))
            {
                Interlocked.Increment(ref _kicks);
            }

            newest = Math.Max(newest, session.LastKeptTurn);
        }

        return newest;
    }
}
