using ZsAlloc.Pages;

namespace ZsAlloc.Tests.Pages;

/// <summary>What a page source is left with after it failed to map a new arena (out of its 4096 arenas, or mmap refused).</summary>
public sealed class PageSourceOutOfArenasTests
{
    /// <summary>
    /// TakeFresh pushes the newest arena's too-short tail onto the free list and then maps the next arena; when that
    /// throws, _nextFreshPage is left where it was, so every later allocation that needs fresh pages pushes the same tail
    /// again. The second push links the run to itself: from then on every allocation of that length gets the same pages,
    /// two zspages share memory and each overwrites the other's objects.
    /// </summary>
    [Fact]
    public void A_failed_arena_mapping_does_not_list_the_last_arenas_tail_twice()
    {
        using var pages = new PageSource();
        // 15-page runs leave a 4-page tail in every arena. Run until no arena can be mapped: the 4096 allowed arenas
        // (256 GiB of address space, MAP_NORESERVE, never touched) or an mmap the kernel refuses first.
        int runs = 0;
        OutOfMemoryException? failed = null;
        while (failed == null)
        {
            try
            {
                pages.AllocateRun(15, out _);
                runs++;
            }
            catch (OutOfMemoryException e)
            {
                failed = e;
            }
        }

        Assert.True(runs > 1000, $"only {runs} runs before the first failure");

        // The caller (a write refused for want of memory) tries again later: it fails the same way.
        Assert.Throws<OutOfMemoryException>(() => pages.AllocateRun(15, out _));

        int a = pages.AllocateRun(4, out _);
        int b = pages.AllocateRun(4, out _);
        Assert.True(a != b, $"two allocations of 4 pages got the same run at page {a}: the last arena's tail was listed twice");
    }
}
