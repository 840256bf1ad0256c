namespace ZsAlloc.Tests.Pool;

/// <summary>Words kept in handle cells (zram's non-zero same-filled pages): no object, 8 bytes each.</summary>
public sealed class WordCellTests
{
    private const int DescriptorBytes = 20;

    [Fact]
    public void Words_round_trip_whatever_their_bits_and_share_the_cells_with_objects()
    {
        using var pool = new ZsPool();
        ulong[] values = [0, 1, ulong.MaxValue, 0x8000_0000_0000_0000, 0xC000_0000_0000_0000, 0xA5A5_A5A5_A5A5_A5A5, 0x0123_4567_89AB_CDEF];
        var words = new List<(uint Handle, ulong Value)>();
        var objects = new List<uint>();
        for (int i = 0; i < 2000; i++)
        {
            ulong value = values[i % values.Length] ^ (ulong)(i / values.Length);
            words.Add((pool.StoreWord(value), value));
            uint handle = pool.Malloc(100 + (i % 500));
            pool.Write(handle, TestPattern.Slice(i, 100 + (i % 500)));
            objects.Add(handle);
        }

        ZsPoolStats stats = pool.GetStats();
        Assert.Equal(2000, stats.Words);
        Assert.Equal(2000, stats.Objects);
        Assert.Equal(4000, words.Select(w => w.Handle).Concat(objects).Distinct().Count());

        // Freeing a word gives its cell back: the next word (or object) takes it, and costs no new metadata.
        long metadata = pool.MetadataBytes;
        pool.FreeWord(words[5].Handle);
        Assert.Equal(words[5].Handle, pool.StoreWord(42));
        words[5] = (words[5].Handle, 42);
        Assert.Equal(metadata, pool.MetadataBytes);

        var back = new byte[600];
        for (int i = 0; i < objects.Count; i++)
        {
            Assert.Equal(words[i].Value, pool.ReadWord(words[i].Handle));
            pool.Read(objects[i], back.AsSpan(0, 100 + (i % 500)));
            Assert.True(TestPattern.Slice(i, 100 + (i % 500)).SequenceEqual(back.AsSpan(0, 100 + (i % 500))));
        }

        foreach ((uint handle, _) in words)
        {
            pool.FreeWord(handle);
        }

        Assert.Equal(0, pool.GetStats().Words);
    }

    /// <summary>
    /// A word or object taken and retracted at once, as a write refused at a memory limit does, leaves the pool's
    /// metadata as it was: the newest cell goes back to never created. A plain free keeps it on the free list,
    /// still counted, and so does a retract of a cell that is not the newest.
    /// </summary>
    [Fact]
    public void A_cell_taken_and_retracted_at_once_leaves_the_metadata_as_it_was()
    {
        using var pool = new ZsPool();
        pool.Malloc(200); // a zspage of the class with room, and the page tables, which stay
        var handles = Enumerable.Range(0, 100).Select(i => pool.StoreWord((ulong)i + 1)).ToList();
        long metadata = pool.MetadataBytes;
        for (int i = 0; i < 3; i++)
        {
            pool.RetractWord(pool.StoreWord(0x0123_4567_89AB_CDEF));
            Assert.Equal(metadata, pool.MetadataBytes);
            uint handle = pool.Malloc(200);
            pool.Retract(handle);
            Assert.Equal(metadata, pool.MetadataBytes);
            Assert.Throws<ArgumentException>(() => pool.Free(handle));
        }

        Assert.Equal(100, pool.GetStats().Words);
        Assert.Equal(1, pool.GetStats().Objects);

        // Freed, the newest cell stays counted on the free list, and the next word takes it.
        pool.FreeWord(pool.StoreWord(9));
        long grown = pool.MetadataBytes;
        Assert.Equal(metadata + sizeof(ulong), grown);
        uint reused = pool.StoreWord(10);
        Assert.Equal(grown, pool.MetadataBytes);

        // Retracting a cell that is not the newest puts it on the free list.
        pool.RetractWord(handles[10]);
        Assert.Equal(grown, pool.MetadataBytes);
        Assert.Equal(handles[10], pool.StoreWord(8));
        Assert.Equal(grown, pool.MetadataBytes);
        Assert.Equal(8UL, pool.ReadWord(handles[10]));
        Assert.Equal(10UL, pool.ReadWord(reused));
        Assert.Equal(50UL, pool.ReadWord(handles[49]));
    }

    /// <summary>
    /// An object retracted at once whose Malloc created a zspage for it (its class had none with room) leaves the
    /// metadata as it was too: the zspage's descriptor goes back to never created with the handle cell. The next
    /// object of the class creates the zspage again, as the newest id, and reads back.
    /// </summary>
    [Fact]
    public void An_object_retracted_after_creating_its_zspage_leaves_the_metadata_as_it_was()
    {
        using var pool = new ZsPool();
        uint other = pool.Malloc(3000); // the arena, the first handle chunk and the first descriptor chunk, which stay
        pool.Write(other, TestPattern.Slice(1, 3000));
        long metadata = pool.MetadataBytes;
        long descriptors = pool.ZspageMetadataBytes;
        for (int i = 0; i < 3; i++)
        {
            uint handle = pool.Malloc(200);
            Assert.Equal(descriptors + DescriptorBytes, pool.ZspageMetadataBytes);
            pool.Retract(handle);
            Assert.Equal(descriptors, pool.ZspageMetadataBytes);
            Assert.Equal(metadata, pool.MetadataBytes);
            Assert.Equal(1, pool.LiveZspages);
        }

        uint kept = pool.Malloc(200);
        pool.Write(kept, TestPattern.Slice(2, 200));
        Assert.Equal(descriptors + DescriptorBytes, pool.ZspageMetadataBytes);
        Assert.Equal(2, pool.LiveZspages);
        var back = new byte[3000];
        pool.Read(kept, back.AsSpan(0, 200));
        Assert.True(TestPattern.Slice(2, 200).SequenceEqual(back.AsSpan(0, 200)));
        pool.Read(other, back);
        Assert.True(TestPattern.Slice(1, 3000).SequenceEqual(back));

        // A plain free of the class's only object releases its zspage and keeps the descriptor counted, for reuse.
        pool.Free(kept);
        Assert.Equal(descriptors + DescriptorBytes, pool.ZspageMetadataBytes);
        Assert.Equal(1, pool.LiveZspages);
    }

    [Fact]
    public void Compaction_leaves_words_alone_even_when_they_look_like_the_cells_of_objects_it_moves()
    {
        using var pool = new ZsPool();
        var random = new Random(11);
        var live = new List<(uint Handle, int Size, int Seed)>();
        for (int i = 0; i < 6000; i++)
        {
            int size = random.Next(200, 1500);
            uint handle = pool.Malloc(size);
            pool.Write(handle, TestPattern.Slice(i, size));
            live.Add((handle, size, i));
        }

        live.RemoveAll(o =>
        {
            bool free = random.Next(3) != 0;
            if (free)
            {
                pool.Free(o.Handle);
            }

            return free;
        });

        // Each word is a copy of a live object's cell (allocated, its size and location): a compactor that found
        // cells by their contents instead of through object headers would take these words for objects.
        var words = live.Select(o => pool.ReadWord(o.Handle)).Select(v => (Handle: pool.StoreWord(v), Value: v)).ToList();
        Assert.True(pool.CanCompact() > 0);
        long freed = pool.Compact();
        Assert.True(freed > 0);
        Assert.True(pool.GetStats().ObjectsMoved > 0);

        foreach ((uint handle, ulong value) in words)
        {
            Assert.Equal(value, pool.ReadWord(handle));
        }

        var back = new byte[1500];
        foreach ((uint handle, int size, int seed) in live)
        {
            pool.Read(handle, back.AsSpan(0, size));
            Assert.True(TestPattern.Slice(seed, size).SequenceEqual(back.AsSpan(0, size)));
        }
    }
}
