using ZsAlloc.Pages;

namespace ZsAlloc.Tests.Pages;

/// <summary>Free runs joined before a new arena is mapped (<see cref="PageSource"/>): only free neighbours, never a page in use.</summary>
public sealed class PageSourceCoalescingTests
{
    [Fact]
    public void Joined_runs_fill_the_gaps_between_pages_in_use_and_never_take_one()
    {
        using var pages = new PageSource();
        int[] runs = OneArenaOfSinglePages(pages);

        // Every 37th page stays in use: gaps of 36 free pages (and a first one of 5 and a last one).
        var used = new HashSet<int>();
        for (int i = 0; i < runs.Length; i++)
        {
            if (i % 37 == 5)
            {
                used.Add(runs[i]);
            }
            else
            {
                pages.FreeRun(runs[i], 1, resident: 0);
            }
        }

        int expected = 0;
        int gap = 0;
        for (int i = 0; i <= runs.Length; i++)
        {
            if (i == runs.Length || i % 37 == 5)
            {
                expected += gap / 16;
                gap = 0;
            }
            else
            {
                gap++;
            }
        }

        int taken = 0;
        while (true)
        {
            int head = pages.AllocateRun(16, out bool zeroed);
            Assert.True(zeroed);
            if (head >> PageSource.ArenaPageShift != 0)
            {
                break;
            }

            Assert.Equal(0, (head + 15) >> PageSource.ArenaPageShift);
            for (int page = head; page < head + 16; page++)
            {
                Assert.True(used.Add(page), $"page {page} handed out twice");
            }

            taken++;
        }

        Assert.Equal(expected, taken);
        Assert.Equal(2, pages.ArenaCount);
        // What is left free in the first arena: the pages of the gaps that no 16-page run fitted.
        Assert.Equal(PageSource.PagesPerArena - used.Count, pages.PagesFree);
    }

    /// <summary>
    /// Free runs are listed by length and only ever split, never joined with their free neighbours: once an arena's pages
    /// were freed as 1-page runs (huge objects, 4 KiB each, say incompressible data), a request for a 16-page zspage
    /// finds no run long enough among 16384 free contiguous pages and maps a new arena. Each change in the mix of
    /// object sizes can map arenas again: address space and the 64 KiB owner map of each arena (counted in
    /// MetadataBytes, so in mem_used_total) are never given back, and at 4096 arenas allocation fails while most
    /// mapped pages are free.
    /// </summary>
    [Fact]
    public void Pages_freed_as_short_runs_serve_a_longer_run_instead_of_a_new_arena()
    {
        using var pages = new PageSource();
        int[] runs = OneArenaOfSinglePages(pages);

        // Never written: each goes back to the OS at once and onto the free list.
        foreach (int run in runs)
        {
            pages.FreeRun(run, 1, resident: 0);
        }

        Assert.Equal(1, pages.ArenaCount);
        Assert.Equal(PageSource.PagesPerArena, pages.PagesFree);
        long metadata = pages.MetadataBytes;

        // The same number of pages again, as 16-page runs.
        for (int i = 0; i < PageSource.PagesPerArena / 16; i++)
        {
            pages.AllocateRun(16, out _);
        }

        Assert.True(pages.ArenaCount == 1,
            $"{pages.ArenaCount} arenas (owner maps {metadata} -> {pages.MetadataBytes} bytes) for 16384 pages while "
            + $"{pages.PagesFree} pages of the first arena are free: free runs are never joined");
    }

    /// <summary>Every page of the first arena, each taken as a run of its own (as huge objects take them).</summary>
    private static int[] OneArenaOfSinglePages(PageSource pages)
    {
        var runs = new int[PageSource.PagesPerArena];
        for (int i = 0; i < runs.Length; i++)
        {
            runs[i] = pages.AllocateRun(1, out _);
        }

        return runs;
    }
}
