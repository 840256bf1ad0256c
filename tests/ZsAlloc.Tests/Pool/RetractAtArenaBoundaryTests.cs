namespace ZsAlloc.Tests.Pool;

/// <summary>
/// A Malloc that opened a new arena, retracted (a write its memory limit refused): the new arena's page map counted in
/// MetadataBytes until a page of it is handed out for good, so the retraction leaves the pool's memory as it found it.
/// </summary>
public sealed class RetractAtArenaBoundaryTests
{
    [Theory]
    [InlineData(4096)] // huge: a 1-page zspage
    [InlineData(1500)] // a zspage of several pages
    public void Retracting_the_object_that_opened_an_arena_gives_back_its_page_map(int size)
    {
        using var pool = new ZsPool(new ZsPoolOptions());
        var handles = new List<uint>();
        while (true)
        {
            long metadata = pool.MetadataBytes;
            long pages = pool.TotalPages;
            uint handle = pool.Malloc(size);
            if (pool.ArenasMapped == 1)
            {
                handles.Add(handle);
                continue;
            }

            Assert.True(pool.MetadataBytes >= metadata + (64 * 1024), $"the new arena's map: {metadata} -> {pool.MetadataBytes}");
            pool.Retract(handle);
            Assert.Equal(metadata, pool.MetadataBytes);
            Assert.Equal(pages, pool.TotalPages);
            break;
        }

        // The next object takes the same place, zeroed, and the map counts again; the arena's pages are all handed out
        // from its start.
        long before = pool.MetadataBytes;
        uint again = pool.Malloc(size);
        Assert.True(pool.MetadataBytes >= before + (64 * 1024));
        var bytes = new byte[size];
        pool.Read(again, bytes);
        Assert.All(bytes, b => Assert.Equal(0, b));
        pool.Write(again, TestPattern.Slice(1, size));
        pool.Free(again);
        foreach (uint handle in handles)
        {
            pool.Free(handle);
        }

        pool.Compact();
        ZsPoolInspector.Check(pool);
        Assert.Equal(0, pool.TotalPages);
    }
}
