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

        long freed = ResidentBytes();
        Assert.Equal(0, pool.TotalPages);
        Assert.True(filled - freed > poolBytes * 9 / 10, $"freeing {poolBytes >> 20} MiB lowered RSS by only {(filled - freed) >> 20} MiB");
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

    private static long ResidentBytes()
    {
        // statm: size resident shared text lib data dt, in pages.
        string[] fields = File.ReadAllText("/proc/self/statm").Split(' ');
        return long.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture) * Environment.SystemPageSize;
    }
}
