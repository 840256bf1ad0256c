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
    public void A_shorter_run_comes_out_of_a_longer_warm_one_and_its_rest_stays_warm()
    {
        int a = _pages.AllocateRun(16, out _);
        _pages.AddResident(16);
        _pages.FreeRun(a, 16, resident: 16);

        Assert.Equal(a, _pages.AllocateRun(3, out bool zeroed));
        Assert.False(zeroed);
        Assert.Equal(13, _pages.PagesWarm);
        Assert.Equal(3, _pages.PagesInUse);
        Assert.Equal(a + 3, _pages.AllocateRun(13, out zeroed));
        Assert.False(zeroed);
        Assert.Equal(0, _pages.PagesWarm);
        Assert.Equal(16, _pages.PagesInUse);
        Assert.Equal(0, _pages.PagesFree);
    }

    [Fact]
    public void Past_the_warm_limit_the_run_lengths_least_asked_for_go_back_first()
    {
        // 16-page runs asked for more often than 11-page ones (400 against 300), though 11 pages is the shorter.
        // The figures below are worked out for a limit of 8192 pages.
        Assert.Equal(8192, PageSource.WarmLimitPages);
        int[] sixteens = Enumerable.Range(0, 400).Select(_ => _pages.AllocateRun(16, out bool _)).ToArray();
        int[] elevens = Enumerable.Range(0, 300).Select(_ => _pages.AllocateRun(11, out bool _)).ToArray();
        _pages.AddResident((400 * 16) + (300 * 11));
        foreach (int run in sixteens)
        {
            _pages.FreeRun(run, 16, resident: 16);
        }

        // The 163rd 11-page run takes the warm pages past the limit (6400 + 1793): the trim gives back every warm
        // 11-page run before it touches a 16-page one, then 16-page runs down to half the limit: 256 of them stay.
        foreach (int run in elevens)
        {
            _pages.FreeRun(run, 11, resident: 11);
        }

        Assert.Equal(PageSource.WarmLimitPages / 2 + ((300 - 163) * 11), _pages.PagesWarm);
        int warmSixteens = PageSource.WarmLimitPages / 2 / 16;
        for (int i = 0; i < warmSixteens; i++)
        {
            _pages.AllocateRun(16, out bool zeroed);
            Assert.False(zeroed, $"16-page run {i} of {warmSixteens} was given back to the OS");
        }

        _pages.AllocateRun(16, out bool fresh);
        Assert.True(fresh);
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
