using ZsAlloc.Pages;

namespace ZsAlloc.Tests.Pages;

/// <summary>
/// Random allocations, writes, partial releases and frees of runs whose lengths change from phase to phase (so free
/// runs are split, joined and warm runs trimmed), with the lists and counters checked against a model of the runs held
/// (<see cref="PageSourceInspector"/>).
/// </summary>
public sealed class PageSourceModelTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Lists_and_counters_match_the_runs_held(int seed)
    {
        var random = new Random(seed);
        using var pages = new PageSource();
        var held = new List<(int Head, int Pages, int Resident)>();
        long resident = 0;
        for (int op = 0; op < 300_000; op++)
        {
            int phase = op / 20_000;
            // Phases favour short, long or mixed runs, so the free lists fill with lengths the next phase does not ask for.
            int length = (phase % 3) switch
            {
                0 => random.Next(1, 3),
                1 => random.Next(12, 17),
                _ => random.Next(1, 17),
            };
            int target = 20_000 + (phase % 4 * 6_000);
            int roll = random.Next(100);
            if (roll < (held.Count * 8 < target ? 60 : 40))
            {
                int head = pages.AllocateRun(length, out bool zeroed);
                held.Add((head, length, zeroed ? 0 : length));
                resident += zeroed ? 0 : length;
            }
            else if (roll < 85 && held.Count > 0)
            {
                int i = random.Next(held.Count);
                var run = held[i];
                held[i] = held[^1];
                held.RemoveAt(held.Count - 1);
                if (random.Next(8) == 0)
                {
                    Span<PageRun> runs = [new PageRun(run.Head, run.Pages, run.Resident)];
                    pages.FreeRuns(runs);
                }
                else
                {
                    pages.FreeRun(run.Head, run.Pages, run.Resident);
                }

                resident -= run.Resident;
            }
            else if (roll < 95 && held.Count > 0)
            {
                // Written further (AddResident), or its last written pages given back (ReleasePages).
                int i = random.Next(held.Count);
                var run = held[i];
                if (run.Resident < run.Pages && random.Next(3) != 0)
                {
                    int more = random.Next(1, run.Pages - run.Resident + 1);
                    pages.AddResident(more);
                    held[i] = run with { Resident = run.Resident + more };
                    resident += more;
                }
                else if (run.Resident > 0)
                {
                    int less = random.Next(1, run.Resident + 1);
                    pages.ReleasePages(run.Head + run.Resident - less, less);
                    held[i] = run with { Resident = run.Resident - less };
                    resident -= less;
                }
            }
            else if (roll < 97)
            {
                pages.ReleaseWarmIfUnused();
            }
            else if (roll == 97)
            {
                pages.ReleaseWarm();
            }

            if (op % 5_000 == 0 || op == 299_999)
            {
                Check(pages, held, resident);
            }
        }
    }

    /// <summary>The newest arena's fresh tail, joined with the freed pages before it, serves a run neither could alone.</summary>
    [Fact]
    public void The_fresh_tail_joins_the_free_pages_before_it_and_a_warm_neighbour_stays_apart()
    {
        using var pages = new PageSource();
        var held = new List<(int Head, int Pages, int Resident)>();
        for (int i = 0; i < PageSource.PagesPerArena - 4; i++)
        {
            held.Add((pages.AllocateRun(1, out _), 1, 0));
        }

        // Pages 16360..16369 freed warm (written), 16370..16379 freed given back; 16380..16383 are the fresh tail.
        for (int page = PageSource.PagesPerArena - 24; page < PageSource.PagesPerArena - 4; page++)
        {
            bool warm = page < PageSource.PagesPerArena - 14;
            if (warm)
            {
                pages.AddResident(1);
            }

            pages.FreeRun(page, 1, warm ? 1 : 0);
            held.RemoveAll(r => r.Head == page);
        }

        Check(pages, held, 0);
        int head = pages.AllocateRun(14, out bool zeroed);
        Assert.True(zeroed);
        Assert.Equal(PageSource.PagesPerArena - 14, head);
        Assert.Equal(1, pages.ArenaCount);
        held.Add((head, 14, 0));
        Check(pages, held, 0);

        // The warm pages go back and are joined the next time the arena is used up: 10 pages, and never the run held.
        pages.ReleaseWarm();
        Check(pages, held, 0);
        int next = pages.AllocateRun(10, out zeroed);
        Assert.True(zeroed);
        Assert.Equal(PageSource.PagesPerArena - 24, next);
        held.Add((next, 10, 0));
        Check(pages, held, 0);
    }

    private static void Check(PageSource pages, List<(int Head, int Pages, int Resident)> held, long resident)
    {
        Assert.Equal(resident, pages.PagesInUse);
        HashSet<int> listed = PageSourceInspector.Check(pages);
        foreach (var run in held)
        {
            for (int page = run.Head; page < run.Head + run.Pages; page++)
            {
                Assert.True(listed.Add(page), $"page {page} of a run held at {run.Head} is listed too, or held twice");
            }
        }

        Assert.Equal((long)pages.ArenaCount * PageSource.PagesPerArena, listed.Count);
    }
}
