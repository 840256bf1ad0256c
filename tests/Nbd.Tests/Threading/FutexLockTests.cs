using Nbd.Threading;

namespace Nbd.Tests.Threading;

/// <summary>
/// The futex lock's two ways of letting go: <see cref="FutexLock.Exit"/> wakes a sleeper, and
/// <see cref="FutexLock.ExitWithoutWake"/> leaves it asleep until the next Exit, whoever makes it. Both with a
/// thread really asleep in futex(2) (counted as a sleeper first), so the waking is what is tested, not the spin.
/// </summary>
public sealed class FutexLockTests
{
    [Fact]
    public void Exit_wakes_a_sleeper()
    {
        var futex = new FutexLock();
        futex.Enter();
        using var acquired = new ManualResetEventSlim();
        Thread sleeper = StartSleeper(futex, acquired);

        futex.Exit();
        Assert.True(acquired.Wait(Poll.Patience), "the sleeper was not woken by Exit");
        sleeper.Join();
        Assert.True(futex.TryEnter(), "the sleeper let go, so the lock is free");
    }

    [Fact]
    public void ExitWithoutWake_leaves_a_sleeper_asleep_until_the_next_Exit()
    {
        var futex = new FutexLock();
        futex.Enter();
        using var acquired = new ManualResetEventSlim();
        Thread sleeper = StartSleeper(futex, acquired);

        futex.ExitWithoutWake();
        Assert.False(acquired.Wait(TimeSpan.FromMilliseconds(300)), "ExitWithoutWake woke the sleeper");
        Assert.Equal(1, futex.Sleepers);

        // The holder comes back for the lock itself (free, so no wait), and its ordinary Exit wakes the sleeper.
        Assert.True(futex.TryEnter());
        futex.Exit();
        Assert.True(acquired.Wait(Poll.Patience), "the sleeper left asleep was not woken by the next Exit");
        sleeper.Join();
        Assert.Equal(0, futex.Sleepers);
    }

    [Fact]
    public void Many_threads_counting_under_the_lock_lose_no_increment_and_no_sleeper()
    {
        // Half the exits skip the wake-up; the ordinary ones must still get every sleeper through in the end.
        var futex = new FutexLock();
        long counter = 0;
        var threads = new Thread[4];
        for (int t = 0; t < threads.Length; t++)
        {
            threads[t] = new Thread(() =>
            {
                for (int i = 0; i < 20_000; i++)
                {
                    futex.Enter();
                    counter++;
                    if ((i & 1) == 0)
                    {
                        futex.ExitWithoutWake();
                    }
                    else
                    {
                        futex.Exit();
                    }
                }

                // Leave with an ordinary Exit so that no thread is left asleep behind a skipped wake-up.
                futex.Enter();
                futex.Exit();
            });
            threads[t].Start();
        }

        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(Poll.Patience), "a thread never got the lock");
        }

        Assert.Equal(threads.Length * 20_000L, counter);
    }

    private static Thread StartSleeper(FutexLock futex, ManualResetEventSlim acquired)
    {
        var sleeper = new Thread(() =>
        {
            futex.Enter();
            acquired.Set();
            futex.Exit();
        });
        sleeper.Start();
        for (int i = 0; i < 3000 && futex.Sleepers == 0; i++)
        {
            Thread.Sleep(10);
        }

        Assert.Equal(1, futex.Sleepers);
        Assert.False(acquired.IsSet);
        return sleeper;
    }
}
