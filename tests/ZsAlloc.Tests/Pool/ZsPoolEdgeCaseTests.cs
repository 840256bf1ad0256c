namespace ZsAlloc.Tests.Pool;

public sealed class ZsPoolEdgeCaseTests : IDisposable
{
    private readonly ZsPool _pool = new();

    public void Dispose() => _pool.Dispose();

    // Slot = payload + 4-byte header, rounded up to the merged class (hand-derived from calculate_zspage_chain_size):
    //    1 +4 =    5 -> 32 (1 page, 128 objects)    28 +4 = 32 -> 32        29 +4 = 33 -> 48 (3 pages, 256)
    //   31 +4 =   35 -> 48      32 +4 = 36 -> 48    44 +4 = 48 -> 48
    // 3628 +4 = 3632 -> 3632 (8 pages, 9 objects)
    // 3836 +4 = 3840 -> 3840, the last class that shares pages (15 pages, 16 objects, with the default 16-page chains)
    // 3837 and above -> the huge class: one 4096-byte page per object, no header.
    [Theory]
    [InlineData(1, 32, 1)]
    [InlineData(28, 32, 1)]
    [InlineData(29, 48, 3)]
    [InlineData(31, 48, 3)]
    [InlineData(32, 48, 3)]
    [InlineData(44, 48, 3)]
    [InlineData(3628, 3632, 8)]
    [InlineData(3836, 3840, 15)]
    [InlineData(3837, 4096, 1)]
    [InlineData(4096, 4096, 1)]
    public void Size_goes_to_the_expected_class_and_round_trips(int size, int classSize, int pagesPerZspage)
    {
        uint handle = _pool.Malloc(size);
        Assert.NotEqual(0U, handle);
        _pool.Write(handle, TestPattern.Slice(size, size));

        ZsClassStats row = Assert.Single(_pool.GetClassStats(), r => r.ObjUsed == 1);
        Assert.Equal(classSize, row.Size);
        Assert.Equal(pagesPerZspage, row.PagesPerZspage);
        Assert.Equal(pagesPerZspage, row.PagesUsed);
        // Only the pages of the one slot handed out are written and counted, not the whole zspage.
        Assert.Equal((classSize + 4095) / 4096, _pool.TotalPages);
        Assert.Equal(_pool.TotalPages, row.PagesResident);

        var back = new byte[size];
        _pool.Read(handle, back);
        Assert.True(TestPattern.Slice(size, size).SequenceEqual(back));

        using (ZsReadView view = _pool.MapRead(handle, size, new byte[ZsPool.MaxObjectSize]))
        {
            Assert.True(TestPattern.Slice(size, size).SequenceEqual(view.Span));
        }

        _pool.Free(handle);
        Assert.Equal(0, _pool.TotalPages);
        Assert.Equal(0, _pool.GetStats().Objects);
    }

    [Fact]
    public void Huge_watermark_is_the_kernels_zs_huge_class_size()
    {
        // The largest class sharing pages is 3840 (15 pages, 16 objects): 3840 - 4 (header) + 1.
        Assert.Equal(3837, _pool.HugeClassSize);
        using var chain8 = new ZsPool(new ZsPoolOptions { ChainLimit = 8 });
        // With the kernel's default 8-page chains it is 3632 (8 pages, 9 objects): 3632 - 3.
        Assert.Equal(3629, chain8.HugeClassSize);
        using var chain4 = new ZsPool(new ZsPoolOptions { ChainLimit = 4 });
        // With 4-page chains the largest class sharing pages is 3264 (4 pages, 5 objects): 3264 - 3.
        Assert.Equal(3261, chain4.HugeClassSize);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(4097)]
    [InlineData(int.MaxValue)]
    public void Sizes_outside_1_to_4096_are_rejected(int size)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => _pool.Malloc(size));
        Assert.Equal(0, _pool.TotalPages);
    }

    [Fact]
    public void Objects_crossing_page_boundaries_keep_their_bytes()
    {
        // Class 3632 has 9 objects over 8 pages: all but the first cross a page boundary.
        var handles = new uint[9];
        for (int i = 0; i < handles.Length; i++)
        {
            handles[i] = _pool.Malloc(3624);
            _pool.Write(handles[i], TestPattern.Slice(i * 7919, 3624));
        }

        Assert.Equal(8, _pool.TotalPages);
        var back = new byte[3624];
        for (int i = 0; i < handles.Length; i++)
        {
            _pool.Read(handles[i], back);
            Assert.True(TestPattern.Slice(i * 7919, 3624).SequenceEqual(back), $"object {i}");
        }
    }

    [Fact]
    public void A_zspage_counts_its_pages_as_its_slots_are_first_handed_out()
    {
        // Class 3632: 9 slots over 8 pages. A zspage on zeroed pages counts the pages up to its highest slot.
        var handles = new uint[9];
        for (int i = 0; i < handles.Length; i++)
        {
            handles[i] = _pool.Malloc(3624);
            _pool.Write(handles[i], TestPattern.Slice(i, 3624));
            Assert.Equal(((i + 1) * 3632 + 4095) / 4096, _pool.TotalPages);
            Assert.Equal(8, Assert.Single(_pool.GetClassStats(), r => r.ObjUsed > 0).PagesUsed);
        }

        Assert.Equal(8, _pool.PeakPages);

        // A freed slot below the untouched tail is reused first and costs nothing new.
        _pool.Free(handles[4]);
        handles[4] = _pool.Malloc(3624);
        _pool.Write(handles[4], TestPattern.Slice(40, 3624));
        Assert.Equal(8, _pool.TotalPages);
        var back = new byte[3624];
        for (int i = 0; i < handles.Length; i++)
        {
            _pool.Read(handles[i], back);
            Assert.True(TestPattern.Slice(i == 4 ? 40 : i, 3624).SequenceEqual(back), $"object {i}");
        }

        // Emptied, the zspage's run stays warm (resident): reused, it is counted in full at once and its slots
        // are linked explicitly, since its pages no longer read as zeros.
        foreach (uint handle in handles)
        {
            _pool.Free(handle);
        }

        Assert.Equal(0, _pool.TotalPages);
        for (int i = 0; i < 2; i++)
        {
            handles[i] = _pool.Malloc(3624);
            _pool.Write(handles[i], TestPattern.Slice(100 + i, 3624));
        }

        Assert.Equal(8, _pool.TotalPages);
        for (int i = 2; i < handles.Length; i++)
        {
            handles[i] = _pool.Malloc(3624);
            _pool.Write(handles[i], TestPattern.Slice(100 + i, 3624));
        }

        Assert.Equal(8, _pool.TotalPages);
        for (int i = 0; i < handles.Length; i++)
        {
            _pool.Read(handles[i], back);
            Assert.True(TestPattern.Slice(100 + i, 3624).SequenceEqual(back), $"object {i} in the reused run");
            _pool.Free(handles[i]);
        }
    }

    [Fact]
    public void Freeing_the_newest_slot_of_a_tail_uncounts_its_pages()
    {
        // Class 3632, 9 slots over 8 pages: the third slot (bytes 7264..10895) alone reaches into page 2.
        var handles = Enumerable.Range(0, 3).Select(_ => _pool.Malloc(3624)).ToArray();
        Assert.Equal(3, _pool.TotalPages);
        // As an allocation refused at the memory limit: allocated, then freed at once. The page goes back.
        _pool.Free(handles[2]);
        Assert.Equal(2, _pool.TotalPages);
        handles[2] = _pool.Malloc(3624);
        _pool.Write(handles[2], TestPattern.Slice(2, 3624));
        Assert.Equal(3, _pool.TotalPages);
        // An older slot's free keeps the page (it is shared or below the newest), and the slot is reused.
        _pool.Free(handles[0]);
        Assert.Equal(3, _pool.TotalPages);
        handles[0] = _pool.Malloc(3624);
        Assert.Equal(3, _pool.TotalPages);
        var back = new byte[3624];
        _pool.Read(handles[2], back);
        Assert.True(TestPattern.Slice(2, 3624).SequenceEqual(back));
        Assert.Equal(0, _pool.CanCompact());
    }

    [Fact]
    public void A_freed_slot_is_reused_before_a_fuller_zspage_writes_a_new_page()
    {
        // Class 3632, 9 slots over 8 pages. Zspage A full, zspage B with 5 objects (5 pages written); then A keeps 4.
        var a = Enumerable.Range(0, 9).Select(_ => _pool.Malloc(3624)).ToArray();
        var b = Enumerable.Range(0, 5).Select(_ => _pool.Malloc(3624)).ToArray();
        Assert.Equal(8 + 5, _pool.TotalPages);
        for (int i = 0; i < 5; i++)
        {
            _pool.Free(a[i]);
        }

        // B is the fuller zspage, but its next slot would write its sixth page: the object goes to a slot freed in A.
        uint handle = _pool.Malloc(3624);
        _pool.Write(handle, TestPattern.Slice(7, 3624));
        Assert.Equal(8 + 5, _pool.TotalPages);
        var back = new byte[3624];
        _pool.Read(handle, back);
        Assert.True(TestPattern.Slice(7, 3624).SequenceEqual(back));
    }

    [Fact]
    public void MapRead_is_a_direct_view_of_pool_memory()
    {
        uint handle = _pool.Malloc(100);
        _pool.Write(handle, TestPattern.Slice(1, 100));
        var scratch = new byte[ZsPool.MaxObjectSize];
        using ZsReadView view = _pool.MapRead(handle, 60, scratch);
        Assert.Equal(60, view.Span.Length);
        Assert.False(view.Span.Overlaps(scratch));
        Assert.True(TestPattern.Slice(1, 60).SequenceEqual(view.Span));
    }

    [Fact]
    public void Partial_read_and_write_touch_only_the_first_bytes()
    {
        uint handle = _pool.Malloc(200);
        _pool.Write(handle, TestPattern.Slice(5, 200));
        _pool.Write(handle, TestPattern.Slice(9, 50));
        var back = new byte[200];
        _pool.Read(handle, back);
        Assert.True(TestPattern.Slice(9, 50).SequenceEqual(back.AsSpan(0, 50)));
        Assert.True(TestPattern.Slice(5, 200)[50..].SequenceEqual(back.AsSpan(50)));
    }

    [Fact]
    public void Longer_than_the_object_is_rejected()
    {
        uint handle = _pool.Malloc(100);
        Assert.Throws<ArgumentException>(() => _pool.Write(handle, new byte[101]));
        Assert.Throws<ArgumentException>(() => _pool.Read(handle, new byte[101]));
        Assert.Throws<ArgumentException>(() => _pool.MapRead(handle, 101, new byte[4096]));
        uint huge = _pool.Malloc(4000);
        Assert.Throws<ArgumentException>(() => _pool.Write(huge, new byte[4001]));
        // The rejected calls left no pin behind: compaction and free still work.
        _pool.Free(handle);
        _pool.Free(huge);
        Assert.Equal(0, _pool.TotalPages);
    }

    [Fact]
    public void Freed_handles_are_refused()
    {
        uint handle = _pool.Malloc(64);
        _pool.Free(handle);
        Assert.Throws<InvalidOperationException>(() => _pool.Free(handle));
        Assert.Throws<InvalidOperationException>(() => _pool.Read(handle, new byte[1]));
        Assert.Throws<InvalidOperationException>(() => _pool.Write(handle, new byte[1]));
        Assert.Throws<InvalidOperationException>(() => _pool.FreeDeferred(handle));

        // A 32-bit handle has no room for a generation: the next allocation reuses the cell and the handle,
        // as the kernel's zs_malloc may return a freed handle again.
        uint next = _pool.Malloc(64);
        Assert.Equal(handle, next);
        _pool.Free(next);
    }

    [Fact]
    public void Handles_that_name_no_cell_and_zero_are_refused()
    {
        uint handle = _pool.Malloc(64);
        Assert.Throws<ArgumentException>(() => _pool.Free(handle + 1));
        Assert.Throws<ArgumentException>(() => _pool.Read(handle + 1, new byte[1]));
        Assert.Throws<ArgumentException>(() => _pool.Free(0));
        Assert.Throws<ArgumentException>(() => _pool.Write(uint.MaxValue, new byte[1]));
        Assert.Throws<ArgumentException>(() => _pool.ReadWord(handle + 1));
        _pool.Free(handle);
    }

    [Fact]
    public void Prefetch_is_only_a_hint_for_any_handle_and_changes_nothing()
    {
        uint live = _pool.Malloc(1000);
        _pool.Write(live, TestPattern.Slice(7, 1000));
        uint huge = _pool.Malloc(4096);
        _pool.Write(huge, TestPattern.Slice(3, 4096));
        uint freed = _pool.Malloc(64);
        _pool.Free(freed);
        uint queued = _pool.Malloc(64);
        _pool.FreeDeferred(queued);
        // Word cells hold any value: these look allocated (top bit set) with locations far past the arenas, as a
        // slot read without its lock may hand over when a same-filled page replaced an object meanwhile.
        uint word = _pool.StoreWord(ulong.MaxValue);
        uint farWord = _pool.StoreWord((1UL << 63) | ZsAlloc.Handles.HandleCell.LocationMask);
        ZsPoolStats before = _pool.GetStats();

        // Live objects (longer and shorter than asked), word cells, a freed cell, a free still queued, a cell never
        // created, zero and the largest handle: no exception, no pin left behind, no state changed.
        foreach (uint handle in new[] { live, huge, word, farWord, freed, queued, farWord + 100, 0U, uint.MaxValue })
        {
            foreach (int length in new[] { 0, 1, 1000, 4096, int.MaxValue, -1 })
            {
                _pool.Prefetch(handle, length);
            }
        }

        ZsPoolStats after = _pool.GetStats();
        Assert.Equal(before.Objects, after.Objects);
        Assert.Equal(before.PagesUsed, after.PagesUsed);
        Assert.Equal(before.DeferredQueueDepth, after.DeferredQueueDepth);
        Assert.Equal(ulong.MaxValue, _pool.ReadWord(word));
        _pool.FreeWord(word);
        _pool.FreeWord(farWord);
        var back = new byte[1000];
        _pool.Read(live, back);
        Assert.True(TestPattern.Slice(7, 1000).SequenceEqual(back));

        // Not pinned: compaction can still move and free everything; the object reads back the same.
        _pool.Free(huge);
        _pool.Compact();
        _pool.Read(live, back);
        Assert.True(TestPattern.Slice(7, 1000).SequenceEqual(back));
        _pool.Free(live);

        var disposed = new ZsPool();
        uint gone = disposed.Malloc(100);
        disposed.Dispose();
        disposed.Prefetch(gone, 100);
    }

    [Fact]
    public void Disposed_pool_refuses_work()
    {
        var pool = new ZsPool();
        uint handle = pool.Malloc(10);
        pool.Dispose();
        Assert.Throws<ObjectDisposedException>(() => pool.Malloc(10));
        Assert.Throws<ObjectDisposedException>(() => pool.Read(handle, new byte[1]));
        pool.Dispose();
    }

    [Theory]
    [InlineData(3)]
    [InlineData(17)]
    public void Chain_limit_outside_4_to_16_is_rejected(int chain) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new ZsPool(new ZsPoolOptions { ChainLimit = chain }));
}
