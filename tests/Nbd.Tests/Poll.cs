using System.Diagnostics;

namespace Nbd.Tests;

/// <summary>Waits for what another thread does by polling, with a deadline long enough for a loaded CI machine.</summary>
internal static class Poll
{
    /// <summary>What a wait for another thread gives it: on a shared two-core machine a thread can wait seconds for a CPU.</summary>
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    /// <summary>True as soon as <paramref name="condition"/> holds; false if it still does not after <see cref="Patience"/>.</summary>
    public static async Task<bool> UntilAsync(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > Patience)
            {
                return condition();
            }

            await Task.Delay(10);
        }

        return true;
    }
}
