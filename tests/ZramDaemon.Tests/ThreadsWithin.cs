namespace ZramDaemon.Tests;

/// <summary>Starts threads and fails the test unless all of them end within a time: only a failure detector for
/// threads that must not block (a generous time, never a measure).</summary>
internal static class ThreadsWithin
{
    public static void StartAndJoin(Thread[] threads, TimeSpan within, string whenLate)
    {
        foreach (Thread thread in threads)
        {
            thread.Start();
        }

        DateTime deadline = DateTime.UtcNow + within;
        Assert.All(threads, thread =>
        {
            TimeSpan left = deadline - DateTime.UtcNow;
            Assert.True(thread.Join(left > TimeSpan.Zero ? left : TimeSpan.Zero), whenLate);
        });
    }
}
