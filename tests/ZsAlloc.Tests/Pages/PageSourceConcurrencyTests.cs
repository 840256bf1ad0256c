using ZsAlloc.Pages;

namespace ZsAlloc.Tests.Pages;

/// <summary>
/// Threads that allocate, write, trim and free runs of changing lengths at once (warm trims and their madvise outside
/// the lock, free runs joined while other threads list theirs), checked between rounds by <see cref="PageSourceInspector"/>.
/// </summary>
public sealed class PageSourceConcurrencyTests
{
    [Fact]
    public void Lists_and_counters_match_the_runs_held_after_racing_rounds()
    {
        using var pages = new PageSource();
        const int Threads = 3;
        var held = new List<(int Head, int Pages, int Resident)>[Threads];
        for (int t = 0; t < Threads; t++)
        {
            held[t] = [];
        }

        Exception? failure = null;
        int rounds = int.TryParse(Environment.GetEnvironmentVariable("ZS_STRESS_ROUNDS"), out int n) ? n : 12;
        for (int round = 0; round < rounds; round++)
        {
            var threads = new Thread[Threads];
            for (int t = 0; t < Threads; t++)
            {
                var mine = held[t];
                var random = new Random((round * 31) + t);
                int r = round;
                threads[t] = new Thread(() =>
                {
                    try
                    {
                        Work(pages, mine, random, r);
                    }
                    catch (Exception e)
                    {
                        Interlocked.CompareExchange(ref failure, e, null);
                    }
                });
            }

            foreach (Thread t in threads)
            {
                t.Start();
            }

            foreach (Thread t in threads)
            {
                t.Join();
            }

            Assert.Null(failure);
            HashSet<int> listed = PageSourceInspector.Check(pages);
            long resident = 0;
            foreach (var mine in held)
            {
                foreach (var run in mine)
                {
                    resident += run.Resident;
                    for (int page = run.Head; page < run.Head + run.Pages; page++)
                    {
                        Assert.True(listed.Add(page), $"page {page} of a run held at {run.Head} is listed too, or held twice");
                    }
                }
            }

            Assert.Equal(resident, pages.PagesInUse);
            Assert.Equal((long)pages.ArenaCount * PageSource.PagesPerArena, listed.Count);
        }
    }

    private static void Work(PageSource pages, List<(int Head, int Pages, int Resident)> held, Random random, int round)
    {
        int target = 6_000 + random.Next(6_000);
        for (int op = 0; op < 40_000; op++)
        {
            int length = (round % 3) switch
            {
                0 => 1,
                1 => random.Next(13, 17),
                _ => random.Next(1, 17),
            };
            int roll = random.Next(100);
            int total = held.Count;
            if (roll < (total * 5 < target ? 55 : 40))
            {
                int head = pages.AllocateRun(length, out bool zeroed);
                int resident = zeroed ? 0 : length;
                if (zeroed && random.Next(2) == 0)
                {
                    pages.AddResident(length);
                    resident = length;
                }

                held.Add((head, length, resident));
            }
            else if (roll < 90 && held.Count > 0)
            {
                int i = random.Next(held.Count);
                var run = held[i];
                held[i] = held[^1];
                held.RemoveAt(held.Count - 1);
                if (random.Next(6) == 0)
                {
                    Span<PageRun> runs = [new PageRun(run.Head, run.Pages, run.Resident)];
                    pages.FreeRuns(runs);
                }
                else
                {
                    pages.FreeRun(run.Head, run.Pages, run.Resident);
                }
            }
            else if (roll < 97 && held.Count > 0)
            {
                int i = random.Next(held.Count);
                var run = held[i];
                if (run.Resident > 0)
                {
                    int less = random.Next(1, run.Resident + 1);
                    pages.ReleasePages(run.Head + run.Resident - less, less);
                    held[i] = run with { Resident = run.Resident - less };
                }
            }
            else if (roll < 99)
            {
                pages.ReleaseWarmIfUnused();
            }
            else
            {
                pages.ReleaseWarm();
            }
        }
    }
}
