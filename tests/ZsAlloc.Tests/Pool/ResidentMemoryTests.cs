using ZsAlloc.Pages;

namespace ZsAlloc.Tests.Pool;

[CollectionDefinition(nameof(ResidentMemoryCollection), DisableParallelization = true)]
public sealed class ResidentMemoryCollection;

/// <summary>Freed zspages must really leave the process: RSS (from /proc/self/statm) falls. Runs alone.</summary>
[Collection(nameof(ResidentMemoryCollection))]
public sealed class ResidentMemoryTests
{
    private const int Objects = 48_000;
    private const int Size = 1400;

    [Fact]
    public void Rss_falls_when_objects_are_freed()
    {
        using var pool = new ZsPool();
        var handles = new uint[Objects];
        long before = ResidentBytes();
        for (int i = 0; i < Objects; i++)
        {
            handles[i] = pool.Malloc(Size);
            pool.Write(handles[i], TestPattern.Slice(i, Size));
        }

        long poolBytes = pool.TotalPages * 4096;
        long filled = ResidentBytes();
        Assert.True(poolBytes > 64 << 20);
        Assert.True(filled - before > poolBytes * 9 / 10, $"filling {poolBytes >> 20} MiB raised RSS by only {(filled - before) >> 20} MiB");

        foreach (uint handle in handles)
        {
            pool.Free(handle);
        }

        // All but the pages kept warm for reuse (at most the limit) left at once.
        long freed = ResidentBytes();
        Assert.Equal(0, pool.TotalPages);
        int warm = pool.GetStats().PagesWarm;
        Assert.InRange(warm, 1, PageSource.WarmLimitPages);
        Assert.True(filled - freed > (poolBytes * 9 / 10) - (warm * 4096L),
            $"freeing {poolBytes >> 20} MiB ({warm * 4096L >> 20} MiB kept warm) lowered RSS by only {(filled - freed) >> 20} MiB");

        // The warm ones leave once a maintenance tick finds the pool idle: not on the first call (frees happened
        // since the pool was made), on the next.
        Assert.Equal(0, pool.ReleaseWarmIfUnused());
        Assert.Equal(warm, pool.ReleaseWarmIfUnused());
        long idle = ResidentBytes();
        Assert.Equal(0, pool.GetStats().PagesWarm);
        Assert.True(filled - idle > poolBytes * 9 / 10, $"freeing {poolBytes >> 20} MiB lowered RSS by only {(filled - idle) >> 20} MiB once idle");
    }

    [Fact]
    public void Rss_falls_when_compaction_frees_zspages()
    {
        using var pool = new ZsPool();
        var handles = new uint[Objects];
        for (int i = 0; i < Objects; i++)
        {
            handles[i] = pool.Malloc(Size);
            pool.Write(handles[i], TestPattern.Slice(i, Size));
        }

        // Free two of every three objects: every zspage keeps a third of its objects, none becomes empty.
        for (int i = 0; i < Objects; i++)
        {
            if (i % 3 != 0)
            {
                pool.Free(handles[i]);
            }
        }

        long pagesBefore = pool.TotalPages;
        long rssBefore = ResidentBytes();
        long freedPages = pool.Compact();
        long rssAfter = ResidentBytes();
        Assert.True(freedPages > pagesBefore / 2, $"compaction freed {freedPages} of {pagesBefore} pages");
        Assert.True(rssBefore - rssAfter > freedPages * 4096 * 9 / 10,
            $"compaction freed {freedPages * 4096 >> 20} MiB but RSS fell by {(rssBefore - rssAfter) >> 20} MiB");

        var back = new byte[Size];
        for (int i = 0; i < Objects; i += 3)
        {
            pool.Read(handles[i], back);
            Assert.True(TestPattern.Slice(i, Size).SequenceEqual(back));
        }
    }

    [Fact]
    public void Untouched_zspage_tails_cost_no_rss_and_are_not_counted()
    {
        using var pool = new ZsPool(new ZsPoolOptions { ChainLimit = 16, DeferredFreeCapacity = 0 });
        // The first allocation maps an arena (and its owner map) and a chunk of handle cells: not what is measured.
        pool.Free(pool.Malloc(16));

        // One object in every class (but the huge one): each opens a zspage of up to 16 pages and writes the
        // pages of one slot. Twenty pools' worth of zspages would not fit the test's bound if they were written whole.
        IReadOnlyList<ZsClassStats> classes = pool.GetClassStats();
        long fullZspages = classes.Where(c => c.Size < 4096).Sum(c => (long)c.PagesPerZspage);
        long pagesBefore = pool.TotalPages;
        long rssBefore = ResidentBytes();
        foreach (ZsClassStats c in classes.Where(c => c.Size < 4096 && c.Size - 4 < pool.HugeClassSize))
        {
            int size = c.Size - 4;
            uint handle = pool.Malloc(size);
            pool.Write(handle, TestPattern.Slice(size, size));
        }

        long counted = (pool.TotalPages - pagesBefore) * 4096;
        long grown = ResidentBytes() - rssBefore;
        Assert.True(counted * 3 < fullZspages * 4096, $"{counted >> 10} KiB counted for zspages of {fullZspages * 4} KiB");
        // RSS grows by what is counted (give or take a few pages of the test itself), not by whole zspages.
        Assert.InRange(grown, counted * 9 / 10, counted + (256 << 10));
    }

    private static long ResidentBytes()
    {
        // statm: size resident shared text lib data dt, in pages.
        string[] fields = File.ReadAllText("/proc/self/statm").Split(' ');
        return long.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture) * Environment.SystemPageSize;
    }
}
