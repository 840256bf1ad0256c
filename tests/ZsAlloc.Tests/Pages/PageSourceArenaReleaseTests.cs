using System.Runtime.InteropServices;
using ZsAlloc.Pages;

namespace ZsAlloc.Tests.Pages;

/// <summary>Arenas whose pages are all free again are unmapped with their owner maps, and their indices reused.</summary>
public sealed class PageSourceArenaReleaseTests
{
    private const int RunsPerArena = PageSource.PagesPerArena / 16;

    /// <summary>
    /// Three arenas filled with written 16-page runs, then all freed (a whole-device discard). Each arena's 64 KiB owner
    /// map (MetadataBytes, so mem_used_total) and address space used to stay for the pool's life; now the two that are
    /// not the newest go, and the next allocations take their indices again, zeroed.
    /// </summary>
    [Fact]
    public void Arenas_left_all_free_are_unmapped_and_their_indices_serve_again()
    {
        using var pages = new PageSource();
        List<int> runs = TakeWrittenRuns(pages, 3 * RunsPerArena);
        Assert.Equal(3, pages.ArenaCount);

        FreeAll(pages, runs);
        Assert.Equal(3L * PageSource.PagesPerArena, pages.PagesFree);
        Assert.Equal(2, pages.ReleaseEmptyArenas());
        Assert.Equal(1, pages.ArenaCount);
        Assert.Equal(PageSource.PagesPerArena * sizeof(int), pages.MetadataBytes);
        Assert.Equal(PageSource.PagesPerArena, pages.PagesFree);
        Assert.Equal(0, pages.PagesInUse);
        Assert.Equal(0, pages.ReleaseEmptyArenas());
        PageSourceInspector.Check(pages);

        // Three arenas' worth again: the free arena first, then the released indices; no page twice, all zeroed.
        var seen = new HashSet<int>();
        List<int> again = TakeWrittenRuns(pages, 3 * RunsPerArena, seen);
        Assert.Equal(3, pages.ArenaCount);
        Assert.All(again, head => Assert.True(head >> PageSource.ArenaPageShift < 3, $"run at {head}: a new index while released ones were free"));
        Assert.Equal(3L * PageSource.PagesPerArena, pages.PagesInUse);
        PageSourceInspector.Check(pages);
    }

    [Fact]
    public void An_arena_with_one_page_in_use_stays_and_that_page_keeps_its_bytes()
    {
        using var pages = new PageSource();
        List<int> runs = TakeWrittenRuns(pages, 2 * RunsPerArena + 1);
        Assert.Equal(3, pages.ArenaCount);

        // One run of the first arena stays in use.
        int kept = runs[100];
        runs.RemoveAt(100);
        FreeAll(pages, runs);

        // The first arena holds a page in use and the third is the newest: only the second goes.
        Assert.Equal(1, pages.ReleaseEmptyArenas());
        Assert.Equal(2, pages.ArenaCount);
        Assert.DoesNotContain(kept, PageSourceInspector.Check(pages));
        Assert.Equal((byte)kept, Marshal.ReadByte(pages.PageAddress(kept)));
        Assert.Equal(0, kept >> PageSource.ArenaPageShift);
    }

    /// <summary>No compaction needed: a pool gone idle (two maintenance ticks with no free and no reuse) gives them back too.</summary>
    [Fact]
    public void An_idle_pool_releases_them_at_its_maintenance_tick()
    {
        using var pages = new PageSource();
        List<int> runs = TakeWrittenRuns(pages, 3 * RunsPerArena);
        foreach (int head in runs)
        {
            pages.FreeRun(head, 16, resident: 16);
        }

        pages.ReleaseWarmIfUnused();
        pages.ReleaseWarmIfUnused();
        Assert.Equal(0, pages.PagesWarm);
        Assert.Equal(1, pages.ArenaCount);
    }

    private static List<int> TakeWrittenRuns(PageSource pages, int count, HashSet<int>? seen = null)
    {
        var runs = new List<int>(count);
        for (int i = 0; i < count; i++)
        {
            int head = pages.AllocateRun(16, out bool zeroed);
            Assert.True(zeroed);
            for (int page = head; page < head + 16; page++)
            {
                Assert.True(seen?.Add(page) ?? true, $"page {page} handed out twice");
                Assert.Equal(0, Marshal.ReadByte(pages.PageAddress(page)));
                Marshal.WriteByte(pages.PageAddress(page), (byte)page);
            }

            pages.AddResident(16);
            runs.Add(head);
        }

        return runs;
    }

    private static void FreeAll(PageSource pages, List<int> runs)
    {
        var freed = new PageRun[runs.Count];
        for (int i = 0; i < runs.Count; i++)
        {
            freed[i] = new PageRun(runs[i], 16, 16);
        }

        pages.FreeRuns(freed);
    }
}
