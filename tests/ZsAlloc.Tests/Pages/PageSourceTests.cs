using ZsAlloc.Pages;

namespace ZsAlloc.Tests.Pages;

public sealed class PageSourceTests : IDisposable
{
    private readonly PageSource _pages = new();

    public void Dispose() => _pages.Dispose();

    [Fact]
    public void Runs_are_carved_from_one_arena_and_count_as_they_are_written()
    {
        int a = _pages.AllocateRun(3, out bool zeroedA);
        int b = _pages.AllocateRun(8, out bool zeroedB);
        Assert.Equal(a + 3, b);
        Assert.True(zeroedA && zeroedB);
        Assert.Equal(0, _pages.PagesInUse);
        _pages.AddResident(2);
        _pages.AddResident(5);
        Assert.Equal(7, _pages.PagesInUse);
        Assert.Equal(7, _pages.PeakPages);
        Assert.Equal(1, _pages.ArenaCount);
        Assert.Equal(_pages.PageAddress(a) + (3 * PageSource.PageSize), _pages.PageAddress(b));
    }

    [Fact]
    public void A_freed_run_is_kept_warm_and_reused_first_counted_in_full()
    {
        int a = _pages.AllocateRun(4, out _);
        _pages.AddResident(4);
        _pages.FreeRun(a, 4, resident: 4);
        Assert.Equal(4, _pages.PagesWarm);
        Assert.Equal(0, _pages.PagesInUse);
        Assert.Equal(a, _pages.AllocateRun(4, out bool zeroed));
        Assert.False(zeroed);
        Assert.Equal(4, _pages.PagesInUse);
        Assert.Equal(0, _pages.PagesWarm);
        Assert.Equal(4, _pages.PeakPages);
    }

    [Fact]
    public void Warm_runs_go_back_to_the_os_only_after_a_period_without_frees_or_reuse()
    {
        int a = _pages.AllocateRun(4, out _);
        int b = _pages.AllocateRun(4, out _);
        _pages.AddResident(8);
        _pages.FreeRun(a, 4, resident: 4);

        // A free since the previous call: the pool is busy, its warm runs stay for the next allocations.
        Assert.Equal(0, _pages.ReleaseWarmIfUnused());
        Assert.Equal(4, _pages.PagesWarm);

        // Reuse counts as activity too.
        Assert.Equal(a, _pages.AllocateRun(4, out bool zeroed));
        Assert.False(zeroed);
        _pages.FreeRun(b, 4, resident: 4);
        Assert.Equal(0, _pages.ReleaseWarmIfUnused());
        Assert.Equal(4, _pages.PagesWarm);

        // Nothing since: idle, so the warm pages go back (the same addresses are then zeroed runs).
        Assert.Equal(4, _pages.ReleaseWarmIfUnused());
        Assert.Equal(0, _pages.PagesWarm);
        Assert.Equal(4, _pages.PagesFree);
        Assert.Equal(b, _pages.AllocateRun(4, out zeroed));
        Assert.True(zeroed);
        Assert.Equal(0, _pages.ReleaseWarmIfUnused());
    }

    [Fact]
    public void A_run_not_written_to_its_end_goes_back_to_the_os_at_once()
    {
        int a = _pages.AllocateRun(8, out _);
        _pages.AddResident(3);
        _pages.FreeRun(a, 8, resident: 3);
        Assert.Equal(0, _pages.PagesWarm);
        Assert.Equal(8, _pages.PagesFree);
        Assert.Equal(0, _pages.PagesInUse);
        Assert.Equal(a, _pages.AllocateRun(8, out bool zeroed));
        Assert.True(zeroed);
        Assert.Equal(0, _pages.PagesInUse);
    }

    [Fact]
    public void Beyond_the_warm_limit_runs_go_back_to_the_os_and_longer_ones_are_split()
    {
        // Twice the limit and more, so that more than one burst (of more runs than one release batch) goes back.
        int count = (PageSource.WarmLimitPages / 16 * 2) + 100;
        var runs = Enumerable.Range(0, count).Select(_ => _pages.AllocateRun(16, out bool _)).ToArray();
        _pages.AddResident(count * 16);
        foreach (int run in runs)
        {
            _pages.FreeRun(run, 16, resident: 16);
        }

        // Past the limit, warm runs went back to the OS in bursts: never more than the limit stays warm.
        Assert.InRange(_pages.PagesWarm, PageSource.WarmLimitPages / 2, PageSource.WarmLimitPages);
        Assert.Equal(count * 16, _pages.PagesFree + _pages.PagesWarm);
        Assert.Equal(0, _pages.PagesInUse);
        _pages.ReleaseWarm();
        Assert.Equal(0, _pages.PagesWarm);
        Assert.Equal(count * 16, _pages.PagesFree);

        // A 3-page run now comes out of a freed 16-page run, not from fresh pages of the arena.
        int three = _pages.AllocateRun(3, out bool zeroed);
        Assert.True(zeroed);
        Assert.Contains(runs, r => r == three);
        Assert.Equal((count * 16) - 3, _pages.PagesFree);
    }

    [Fact]
    public void Released_pages_read_as_zero_when_reused()
    {
        int a = _pages.AllocateRun(1, out _);
        _pages.AddResident(1);
        unsafe
        {
            byte* p = (byte*)_pages.PageAddress(a);
            p[100] = 42;
        }

        _pages.FreeRuns(new[] { new PageRun(a, 1, Resident: 1) });
        Assert.Equal(0, _pages.PagesInUse);
        int b = _pages.AllocateRun(1, out bool zeroed);
        Assert.Equal(a, b);
        Assert.True(zeroed);
        unsafe
        {
            Assert.Equal(0, ((byte*)_pages.PageAddress(b))[100]);
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(17)]
    public void Run_lengths_outside_1_to_16_are_rejected(int pages) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => _pages.AllocateRun(pages, out _));

    [Fact]
    public void Freeing_a_run_that_is_not_ours_is_rejected()
    {
        _pages.AllocateRun(1, out _);
        Assert.Throws<ArgumentOutOfRangeException>(() => _pages.FreeRun(PageSource.PagesPerArena * 5, 1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => _pages.FreeRun(PageSource.PagesPerArena - 2, 4, 0));
    }
}
