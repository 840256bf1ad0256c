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
/// and an Exit that saw a sleeper wakes one with one system call.
///
/// Drepper's mutex ("Futexes Are Tricky", mutex 3): the state is 0 free, 1 held, 2 held and perhaps a sleeper.
/// The state lives in a pinned array so its address, which is the futex, never moves. Not reentrant; no owner
/// is recorded, so Exit must only be called by the holder. Allocates nothing after construction.
/// </summary>
internal sealed class FutexLock
{
    // About a microsecond of polling: a holder that is running lets go within that (the read turn's holder
    // only copies from the receive buffer when requests are already there); one that is not running (blocked
    // in recv, or preempted) will not, and spinning longer would take the CPU it needs.
    private const int SpinChecks = 16;

    private readonly int[] _state = GC.AllocateArray<int>(1, pinned: true);

    public void Enter()
    {
        if (Interlocked.CompareExchange(ref _state[0], 1, 0) != 0)
        {
            EnterContended();
        }
    }

    public bool TryEnter() => Interlocked.CompareExchange(ref _state[0], 1, 0) == 0;

    public void Exit()
    {
        if (Interlocked.Exchange(ref _state[0], 0) == 2)
        {
            Libc.FutexWake(ref _state[0], 1);
        }
    }

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

        // Marked 2 whoever takes it next, so its Exit wakes the next sleeper; the wait returns at once if the
        // state is no longer 2 when the kernel looks (no wake-up can be lost between the exchange and the wait).
        while (Interlocked.Exchange(ref state, 2) != 0)
        {
            Libc.FutexWait(ref state, 2);
        }
    }
}
