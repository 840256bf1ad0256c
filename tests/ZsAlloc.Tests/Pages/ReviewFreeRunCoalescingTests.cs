using ZsAlloc.Pages;

namespace ZsAlloc.Tests.Pages;

/// <summary>Whether freed pages can serve a run of another length, or only the length they were freed as.</summary>
public sealed class ReviewFreeRunCoalescingTests
{
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
        var runs = new int[PageSource.PagesPerArena];
        for (int i = 0; i < runs.Length; i++)
        {
            runs[i] = pages.AllocateRun(1, out _);
        }

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
}
