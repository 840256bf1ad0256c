using System.Reflection;
using ZsAlloc.Pages;

namespace ZsAlloc.Tests.Pages;

/// <summary>
/// Walks a quiescent page source's free and warm lists (through its private fields) and checks them against its
/// counters and owner map: every listed page once, inside one arena, never in the fresh tail; PagesFree and PagesWarm
/// what the lists hold, and each arena's free count what the free lists hold of it; a listed run's pages past its head
/// free in the owner map; nothing listed in a released arena. Returns the page of every listed and fresh page, so a
/// caller can check that no page it holds is among them.
/// </summary>
internal static class PageSourceInspector
{
    private static T Field<T>(PageSource pages, string name) =>
        (T)typeof(PageSource).GetField(name, BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(pages)!;

    public static HashSet<int> Check(PageSource pages)
    {
        var seen = new HashSet<int>();
        int arenas = pages.ArenaIndexLimit;
        int next = Field<int>(pages, "_nextFreshPage");
        int limit = Field<int>(pages, "_freshLimit");
        Assert.True(next <= limit, $"fresh page {next} past the fresh limit {limit}");
        for (int page = next; page < limit; page++)
        {
            Assert.True(seen.Add(page));
            Assert.Equal(PageSource.NoOwner, pages.OwnerOf(page));
        }

        var freeInArena = new int[arenas];
        long free = Walk(pages, Field<int[]>(pages, "_freeRunHead"), seen, arenas, "free", freeInArena);
        long warm = Walk(pages, Field<int[]>(pages, "_warmRunHead"), seen, arenas, "warm", new int[arenas]);
        int[] counted = Field<int[]>(pages, "_freeInArena");
        for (int arena = 0; arena < arenas; arena++)
        {
            Assert.True(freeInArena[arena] == counted[arena], $"arena {arena}: the free lists hold {freeInArena[arena]} of its pages, its count says {counted[arena]}");
        }

        Assert.True(free == pages.PagesFree, $"the free lists hold {free} pages, PagesFree says {pages.PagesFree}");
        Assert.True(warm == pages.PagesWarm, $"the warm lists hold {warm} pages, PagesWarm says {pages.PagesWarm}");
        return seen;
    }

    private static long Walk(PageSource pages, int[] heads, HashSet<int> seen, int arenas, string what, int[] perArena)
    {
        long total = 0;
        for (int length = 1; length < heads.Length; length++)
        {
            int steps = 0;
            for (int head = heads[length]; head != PageSource.NoOwner; head = -2 - pages.OwnerOf(head))
            {
                Assert.True(++steps <= arenas * PageSource.PagesPerArena, $"the {what} list of {length}-page runs loops");
                Assert.True(head >= 0 && (head >> PageSource.ArenaPageShift) < arenas, $"{what} run at {head} outside the arenas");
                Assert.True(Field<int[]?[]>(pages, "_owners")[head >> PageSource.ArenaPageShift] != null, $"{what} run at {head} in a released arena");
                perArena[head >> PageSource.ArenaPageShift] += length;
                Assert.True((head & (PageSource.PagesPerArena - 1)) + length <= PageSource.PagesPerArena,
                    $"{what} run of {length} at {head} crosses an arena's end");
                Assert.True(pages.OwnerOf(head) <= PageSource.NoOwner, $"{what} run at {head}: its head's entry {pages.OwnerOf(head)} names a zspage");
                for (int page = head; page < head + length; page++)
                {
                    Assert.True(seen.Add(page), $"page {page} listed twice (a {what} run of {length} at {head})");
                    if (page != head)
                    {
                        Assert.True(pages.OwnerOf(page) == PageSource.NoOwner, $"page {page} of a {what} run at {head} is owned by {pages.OwnerOf(page)}");
                    }
                }

                total += length;
            }
        }

        return total;
    }
}
