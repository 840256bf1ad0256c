using System.Diagnostics;

namespace ZsAlloc.Tests;

/// <summary>
/// When a stress test stops: after <c>minimum</c>, once it has done enough to judge (<c>enough</c>), and at
/// <c>maximum</c> whatever it did. A fixed duration judged a loaded machine's few rounds as a failure (CI on
/// 6 December, with other builds running: "2 cycles", "no arena was released"), where the code was right.
/// </summary>
internal static class StressStop
{
    /// <summary>A thread, not started, that cancels <paramref name="stop"/> as above.</summary>
    public static Thread After(CancellationTokenSource stop, TimeSpan minimum, Func<bool> enough, TimeSpan? maximum = null)
    {
        TimeSpan most = maximum ?? TimeSpan.FromSeconds(60);
        return new Thread(() =>
        {
            var clock = Stopwatch.StartNew();
            while (!stop.IsCancellationRequested && (clock.Elapsed < minimum || (!enough() && clock.Elapsed < most)))
            {
                Thread.Sleep(10);
            }

            stop.Cancel();
        });
    }
}
