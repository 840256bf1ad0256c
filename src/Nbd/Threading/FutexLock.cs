using System.Runtime.CompilerServices;
using Nbd.Native;

namespace Nbd.Threading;

/// <summary>
/// A mutual-exclusion lock that sleeps in futex(2) directly, for the read and send turns of a connection's
/// threads (<see cref="Sessions.NbdSession"/>): what nbdkit gets from a pthread mutex. Monitor, Lock and every
/// .NET wait handle go through the runtime's wait subsystem on Linux (a mutex and a condition variable per
/// wait, after spinning first); with two connections on two cores that cost a third of the daemon's CPU at
/// queue depth 32, most of it spinning while the holder was not even running. Here a contended Enter spins a
/// short, fixed while (the holder may be about to let go on the other core), then sleeps with one system call,
/// and an Exit that finds a sleeper wakes one with one system call.
///
/// The state word is 0 free, 1 held; it lives in a pinned array so its address, which is the futex, never
/// moves. Sleepers are counted apart from it, so that <see cref="ExitWithoutWake"/> can let go and leave them
/// asleep: the read turn's holder at queue depth 1 will be back for the turn itself before anyone else has
/// anything to read, and waking a thread only to block it in recv costs two context switches (and, on an idle
/// virtual machine, bringing a halted vCPU back) per request. A sleeper left asleep is woken by the next
/// <see cref="Exit"/> of anyone. No wake-up is lost: a sleeper counts itself before it tries the state, and
/// sleeps only while the state is still 1; a releaser sets 0 before it reads the count. Not reentrant; no
/// owner is recorded, so only the holder may exit. Allocates nothing after construction.
/// </summary>
internal sealed class FutexLock
{
    // About a microsecond of polling: a holder that is running lets go within that (the read turn's holder
    // only copies from the receive buffer when requests are already there); one that is not running (blocked
    // in recv, or preempted) will not, and spinning longer would take the CPU it needs.
    private const int SpinChecks = 16;

    private readonly int[] _state = GC.AllocateArray<int>(1, pinned: true);
    private int _sleepers;

    /// <summary>Threads asleep in <see cref="Enter"/> (or about to be).</summary>
    internal int Sleepers => Volatile.Read(ref _sleepers);

    public void Enter()
    {
        if (Interlocked.CompareExchange(ref _state[0], 1, 0) != 0)
        {
            EnterContended();
        }
    }

    public bool TryEnter() => Interlocked.CompareExchange(ref _state[0], 1, 0) == 0;

    /// <summary>Lets go and wakes one sleeper, if there is one.</summary>
    public void Exit()
    {
        Interlocked.Exchange(ref _state[0], 0);
        if (Volatile.Read(ref _sleepers) != 0)
        {
            Libc.FutexWake(ref _state[0], 1);
        }
    }

    /// <summary>Lets go and leaves any sleeper asleep, for a holder that will take the lock again itself.</summary>
    public void ExitWithoutWake() => Interlocked.Exchange(ref _state[0], 0);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void EnterContended()
    {
        ref int state = ref _state[0];
        for (int i = 0; i < SpinChecks; i++)
        {
            Thread.SpinWait(4);
            if (Volatile.Read(ref state) == 0 && Interlocked.CompareExchange(ref state, 1, 0) == 0)
            {
                return;
            }
        }

        // Counted before the next try, so a holder that lets go after it fails sees the count and wakes; the wait
        // returns at once if the state is no longer 1 when the kernel looks.
        Interlocked.Increment(ref _sleepers);
        while (Interlocked.CompareExchange(ref state, 1, 0) != 0)
        {
            Libc.FutexWait(ref state, 1);
        }

        Interlocked.Decrement(ref _sleepers);
    }
}
