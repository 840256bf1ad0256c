using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Dedup;
using ZramDaemon.Tests.Device.Recompression;

namespace ZramDaemon.Tests.Device.Dedup;

/// <summary>Same-page deduplication against a model: many slots with few distinct contents, overwritten and trimmed in random order.</summary>
public class DedupTests
{
    private const int Page = ZramDevice.PageSize;

    private static ZramDevice Create(int slots, string algorithm = "lz4") => new(new ZramDeviceOptions
    {
        Name = "zram0",
        DiskSize = (long)slots * Page,
        Algorithm = algorithm,
        Dedup = true,
        CompactThresholdPages = 0,
    }, NullLoggerFactory.Instance);

    /// <summary>Eight text pages, two incompressible ones, and variants of the first differing in one byte (same size, other hash).</summary>
    private static byte[][] Contents()
    {
        var random = new Random(4);
        var contents = Enumerable.Range(0, 8).Select(DevicePages.TextPage).ToList();
        contents.Add(RecompressionTests.NibblePage(random));
        var noise = new byte[Page];
        random.NextBytes(noise);
        contents.Add(noise);
        for (int i = 0; i < 4; i++)
        {
            byte[] variant = (byte[])contents[0].Clone();
            variant[100 + i] ^= 0x20;
            contents.Add(variant);
        }

        return contents.ToArray();
    }

    [Fact]
    public void Random_writes_overwrites_and_trims_match_the_model_and_each_content_is_stored_once()
    {
        const int slots = 1024;
        using ZramDevice device = Create(slots);
        byte[][] contents = Contents();
        var model = new int[slots]; // -1: zeros (unwritten or trimmed), else the content index; -2: patched
        var patched = new byte[slots][];
        Array.Fill(model, -1);
        var random = new Random(21);
        var back = new byte[Page];
        for (int op = 0; op < 20000; op++)
        {
            int i = random.Next(slots);
            switch (random.Next(12))
            {
                case 0:
                    Assert.Equal(NbdError.None, device.Trim((long)i * Page, Page));
                    model[i] = -1;
                    break;
                case 1:
                    // Part of a page: the slot gets content of its own (read-modify-write through the dedup path).
                    byte[] current = Expected(model, patched, contents, i);
                    current[512] ^= 0x55;
                    Assert.Equal(NbdError.None, device.Write(((long)i * Page) + 512, current.AsSpan(512, 512), fua: false));
                    model[i] = -2;
                    patched[i] = current;
                    break;
                case < 8:
                    int c = random.Next(contents.Length);
                    Assert.Equal(NbdError.None, device.Write((long)i * Page, contents[c], fua: false));
                    model[i] = c;
                    break;
                default:
                    Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
                    Assert.True(back.AsSpan().SequenceEqual(Expected(model, patched, contents, i)), $"slot {i} reads back different at op {op}");
                    break;
            }
        }

        for (int i = 0; i < slots; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(Expected(model, patched, contents, i)), $"slot {i} reads back different");
        }

        // Each distinct content is stored once. A page patched twice at a trimmed slot is zeros again: same-filled,
        // kept in the slot, not in the dedup index.
        var distinct = new HashSet<string>();
        long stored = 0, same = 0, deduplicable = 0;
        for (int i = 0; i < slots; i++)
        {
            if (model[i] != -1)
            {
                stored++;
                byte[] expected = Expected(model, patched, contents, i);
                if (ZramDevice.IsSameFilled(expected, out _))
                {
                    same++;
                    continue;
                }

                deduplicable++;
                distinct.Add(Convert.ToHexString(expected));
            }
        }

        ZramStats stats = device.GetStats();
        Assert.Equal(stored * Page, stats.OrigDataSize);
        Assert.Equal(deduplicable - distinct.Count, stats.DedupPages);
        Assert.True(stats.DedupBytesSaved > 0);
        Assert.Equal(same, stats.SamePages);

        // Trimming everything frees every object: the pool holds nothing after the deferred frees.
        Assert.Equal(NbdError.None, device.Trim(0, (long)slots * Page));
        device.Compact();
        stats = device.GetStats();
        Assert.Equal(0, stats.OrigDataSize);
        Assert.Equal(0, stats.ComprDataSize);
        Assert.Equal(0, stats.DedupPages);
        Assert.Equal(0, stats.HugePages);
        Assert.Equal(stats.MetadataBytes, stats.MemUsedTotal);
    }

    [Fact]
    public void Many_slots_with_one_content_take_one_object_and_overwriting_one_never_changes_another()
    {
        using ZramDevice device = Create(4096);
        using ZramDevice plain = new(new ZramDeviceOptions { Name = "plain", DiskSize = 4096L * Page }, NullLoggerFactory.Instance);
        byte[] text = DevicePages.TextPage(3);
        for (int i = 0; i < 4096; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, text, fua: false));
            Assert.Equal(NbdError.None, plain.Write((long)i * Page, text, fua: false));
        }

        ZramStats stats = device.GetStats();
        Assert.Equal(4095, stats.DedupPages);
        Assert.True(stats.MemUsedTotal < plain.GetStats().MemUsedTotal / 4, $"{stats.MemUsedTotal} vs {plain.GetStats().MemUsedTotal} without dedup");
        Assert.Equal(plain.GetStats().ComprDataSize / 4096, stats.ComprDataSize);

        byte[] other = DevicePages.TextPage(4);
        Assert.Equal(NbdError.None, device.Write(7L * Page, other, fua: false));
        Assert.Equal(NbdError.None, device.Trim(8L * Page, Page));
        var back = new byte[Page];
        for (int i = 0; i < 4096; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            byte[] expected = i == 7 ? other : i == 8 ? new byte[Page] : text;
            Assert.True(back.AsSpan().SequenceEqual(expected), $"slot {i} reads back different");
        }

        Assert.Equal(4093, device.GetStats().DedupPages);
    }

    /// <summary>
    /// The index's arrays count in mem_used_total and grow by doubling. At the limit, a new page whose entry would
    /// make them grow is stored outside the index (its slot holds the object, as after writeback), so usage stays
    /// under the limit. They grew whatever the limit: a jump of 24 bytes per entry held (196 KiB here), past the
    /// limit, which every later write then had to make room for, or fail with ENOSPC without a backing file.
    /// </summary>
    [Fact]
    public void At_the_limit_a_page_that_would_make_the_index_grow_is_stored_outside_it()
    {
        const int entries = 8192; // the index's capacity after doubling from 1024 three times
        using ZramDevice device = Create(entries * 2);
        byte[][] pages = Enumerable.Range(0, entries + 8).Select(i =>
        {
            byte[] page = (byte[])DevicePages.TextPage(i).Clone();
            BitConverter.TryWriteBytes(page.AsSpan(200, 4), i); // every page its own
            return page;
        }).ToArray();
        for (int i = 0; i < entries; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, pages[i], fua: false));
        }

        device.Compact();
        long metadata = device.GetStats().MetadataBytes;
        long limit = device.MemUsedTotal + (64 << 10); // room for any object's zspage, not for the arrays to double
        device.SetMemLimit(limit);
        for (int i = entries; i < pages.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, pages[i], fua: false));
            Assert.True(device.MemUsedTotal <= limit, $"mem_used_total {device.MemUsedTotal} past the limit {limit} after page {i}");
        }

        // The pool's own metadata moves by a few bytes; doubled arrays would add 196 KiB.
        Assert.InRange(device.GetStats().MetadataBytes - metadata, -4096, 4096);
        // The same bytes again: stored once more (the copy outside the index cannot be shared), still under the limit.
        Assert.Equal(NbdError.None, device.Write((long)(pages.Length + 1) * Page, pages[entries], fua: false));
        Assert.True(device.MemUsedTotal <= limit);
        var back = new byte[Page];
        for (int i = 0; i < pages.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(pages[i]), $"page {i} reads back different");
        }

        Assert.Equal(NbdError.None, device.Read((long)(pages.Length + 1) * Page, back));
        Assert.True(back.AsSpan().SequenceEqual(pages[entries]));
        ZramStats stats = device.GetStats();
        Assert.Equal((pages.Length + 1L) * Page, stats.OrigDataSize);
        Assert.Equal(0, stats.FailedWrites);

        // Trimmed, the objects inside and outside the index all go.
        device.SetMemLimit(0);
        Assert.Equal(NbdError.None, device.Trim(0, device.Size));
        device.FlushDeferredFrees();
        stats = device.GetStats();
        Assert.Equal(0, stats.ComprDataSize);
        Assert.Equal(0, device.GetPoolStats().Objects);
    }

    [Fact]
    public void Huge_pages_since_counts_every_incompressible_page_written_shared_or_not()
    {
        using ZramDevice device = Create(8);
        var noise = new byte[Page];
        new Random(3).NextBytes(noise);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, noise, fua: false));
        }

        ZramStats stats = device.GetStats();
        Assert.Equal((3L, 1L, 2L), (stats.HugePagesSince, stats.HugePages, stats.DedupPages));
    }

    /// <summary>
    /// With dedup on every stored object is an index entry, and writeback and recompression used to pass all of them
    /// by: with a backing file and a memory limit, writes failed with ENOSPC rather than write anything back. A slot
    /// that no other shares now leaves the index and is recompressed or written back as without dedup; the slots
    /// sharing an entry keep it in the pool.
    /// </summary>
    [Fact]
    public void Recompression_and_writeback_take_the_slots_no_other_shares_and_leave_shared_ones()
    {
        const int slots = 256, shared = 64;
        string dir = Directory.CreateTempSubdirectory("zramd-dedup-").FullName;
        try
        {
            using var device = new ZramDevice(new ZramDeviceOptions
            {
                Name = "zram0",
                DiskSize = (long)slots * Page,
                Dedup = true,
                BackingFile = Path.Combine(dir, "zram0.wb"),
                RecompressAlgorithm = "zstd:3",
                CompactThresholdPages = 0,
            }, NullLoggerFactory.Instance);
            var random = new Random(8);
            // The first 64 slots share one text page; the others each hold pages of their own (nibbles, which lz4
            // stores raw and zstd shrinks).
            byte[][] model = Enumerable.Range(0, slots)
                .Select(i => i < shared ? DevicePages.TextPage(5) : RecompressionTests.NibblePage(random)).ToArray();
            for (int i = 0; i < slots; i++)
            {
                Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
            }

            Assert.Equal((shared - 1L, slots - (long)shared), (device.GetStats().DedupPages, device.GetStats().HugePages));
            // huge_pages_since counts the incompressible pages written, deduplicated or not.
            Assert.Equal(slots - (long)shared, device.GetStats().HugePagesSince);
            long text = device.GetStats().ComprDataSize - ((slots - shared) * (long)Page); // the shared object's size

            device.Recompress(SlotSelection.Huge);
            ZramStats stats = device.GetStats();
            Assert.Equal(slots - shared, stats.RecompressedPages);
            Assert.Equal((0L, shared - 1L), (stats.HugePages, stats.DedupPages));

            device.MarkIdle();
            device.Writeback(SlotSelection.Idle);
            stats = device.GetStats();
            Assert.Equal(slots - shared, stats.BdCount);
            Assert.Equal(shared - 1L, stats.DedupPages);
            Assert.Equal((long)slots * Page, stats.OrigDataSize);
            Assert.Equal(text, stats.ComprDataSize); // what is written back leaves the pool's count, as in the kernel

            var back = new byte[Page];
            for (int i = 0; i < slots; i++)
            {
                Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
                Assert.True(back.AsSpan().SequenceEqual(model[i]), $"slot {i} reads back different");
            }

            // Every reference and object is accounted for: trimming it all leaves nothing.
            Assert.Equal(NbdError.None, device.Trim(0, (long)slots * Page));
            device.FlushDeferredFrees();
            stats = device.GetStats();
            Assert.Equal((0L, 0L, 0L, 0L), (stats.OrigDataSize, stats.ComprDataSize, stats.BdCount, stats.DedupPages));
            Assert.Equal(0, device.GetPoolStats().Objects);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <remarks>With zstd a writer needs a stream to compress and, to compare with an entry under the index lock, one
    /// to decompress: a writer that kept its stream while it waited for the index lock deadlocked with the lock's
    /// holder once every stream was held that way (eight writers on two CPUs' streams: about one run in six).</remarks>
    [Theory]
    [InlineData("lz4")]
    [InlineData("zstd")]
    public async Task Concurrent_writers_of_the_same_contents_never_lose_a_reference(string algorithm)
    {
        const int slots = 512;
        using ZramDevice device = Create(slots, algorithm);
        byte[][] contents = Contents();
        var model = new int[slots];
        Array.Fill(model, -1);
        var locks = Enumerable.Range(0, slots).Select(_ => new object()).ToArray();
        int mismatches = 0;
        await Task.WhenAll(Enumerable.Range(0, 8).Select(t => Task.Factory.StartNew(() =>
        {
            var random = new Random(100 + t);
            var back = new byte[Page];
            for (int op = 0; op < 8000; op++)
            {
                int i = random.Next(slots);
                lock (locks[i])
                {
                    switch (random.Next(6))
                    {
                        case 0:
                            Assert.Equal(NbdError.None, device.Trim((long)i * Page, Page));
                            model[i] = -1;
                            break;
                        case < 4:
                            int c = random.Next(contents.Length);
                            Assert.Equal(NbdError.None, device.Write((long)i * Page, contents[c], fua: false));
                            model[i] = c;
                            break;
                        default:
                            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
                            if (!back.AsSpan().SequenceEqual(model[i] < 0 ? new byte[Page] : contents[model[i]]))
                            {
                                Interlocked.Increment(ref mismatches);
                            }

                            break;
                    }
                }
            }
        }, TaskCreationOptions.LongRunning)));

        Assert.Equal(0, mismatches);
        long stored = model.Count(m => m >= 0);
        Assert.Equal(stored - model.Where(m => m >= 0).Distinct().Count(), device.GetStats().DedupPages);
    }

    [Fact]
    public void A_page_written_to_several_slots_at_the_same_moment_is_still_stored_once()
    {
        // Four threads write the same new content at once (released together by a barrier), 200 times, each
        // content different. A writer that finds no entry compresses and stores outside the index lock; one that
        // then found an identical entry added meanwhile must share it, not add a second copy. nbdcopy's
        // connections writing a file twice over did exactly this (DaemonControlTests saw 319 shared pages of 320).
        const int writers = 4;
        const int contents = 200;
        using ZramDevice device = Create(writers * contents);
        using var barrier = new Barrier(writers);
        var threads = Enumerable.Range(0, writers).Select(t => new Thread(() =>
        {
            for (int c = 0; c < contents; c++)
            {
                byte[] page = Content(c);
                barrier.SignalAndWait();
                Assert.Equal(NbdError.None, device.Write(((long)(c * writers) + t) * Page, page, fua: false));
            }
        })).ToArray();
        foreach (Thread thread in threads)
        {
            thread.Start();
        }

        foreach (Thread thread in threads)
        {
            thread.Join();
        }

        ZramStats stats = device.GetStats();
        Assert.Equal((long)contents * (writers - 1), stats.DedupPages);
        var back = new byte[Page];
        for (int c = 0; c < contents; c++)
        {
            for (int t = 0; t < writers; t++)
            {
                Assert.Equal(NbdError.None, device.Read(((long)(c * writers) + t) * Page, back));
                Assert.True(back.AsSpan().SequenceEqual(Content(c)), $"content {c} in writer {t}'s slot reads back different");
            }
        }

        // A text page stamped with its number: never same-filled (those are not deduplicated, they cost nothing).
        static byte[] Content(int c)
        {
            byte[] page = (byte[])DevicePages.TextPage(c).Clone();
            BitConverter.TryWriteBytes(page, c + 1);
            return page;
        }
    }

    [Fact]
    public void The_hash_sees_every_word_and_the_index_frees_on_the_last_release()
    {
        byte[] page = DevicePages.TextPage(1);
        uint hash = DedupIndex.Hash(page);
        for (int at = 0; at < Page; at += 8)
        {
            byte[] changed = (byte[])page.Clone();
            changed[at] ^= 1;
            Assert.NotEqual(hash, DedupIndex.Hash(changed));
        }

        var index = new DedupIndex();
        int id = index.Add(hash, 42, SlotInfo.Compressed(100, ZramDaemon.Compression.CompressionAlgorithm.Lz4));
        lock (index.Lock)
        {
            Assert.Equal(id, index.First(hash));
            Assert.Equal(-1, index.Next(id));
            index.AddReference(id);
        }

        Assert.Equal(2, index.References);
        Assert.Equal(100, index.BytesSaved);
        Assert.False(index.Release(id, out _, out _));
        Assert.True(index.Release(id, out uint handle, out uint info));
        Assert.Equal(42U, handle);
        Assert.Equal(100, SlotInfo.Size(info));
        Assert.Equal(0, index.Count);
        Assert.Throws<InvalidOperationException>(() => index.Release(id, out _, out _));
        lock (index.Lock)
        {
            Assert.Equal(-1, index.First(hash));
        }

        // Growth rechains every live entry.
        var ids = Enumerable.Range(0, 5000).Select(i => index.Add((uint)i * 7919, (uint)i, SlotInfo.Raw())).ToArray();
        lock (index.Lock)
        {
            for (int i = 0; i < ids.Length; i++)
            {
                Assert.Equal(ids[i], index.First((uint)i * 7919));
            }
        }

        Assert.Equal(5000L * Page, index.Bytes);
        Assert.Equal(5000, index.HugeEntries);
    }

    private static byte[] Expected(int[] model, byte[][] patched, byte[][] contents, int i) => model[i] switch
    {
        -1 => new byte[Page],
        -2 => (byte[])patched[i].Clone(),
        _ => (byte[])contents[model[i]].Clone(),
    };

    /// <summary>
    /// Entries' handles move in a handle shrink as slots' do: 40,000 distinct pages written in order (each an entry,
    /// the last ones holding the highest handle cells), all but the last 512 trimmed, then a compaction. Until entries'
    /// handles moved, those 512 kept the table at its peak and the shrink cut nothing.
    /// </summary>
    [Fact]
    public void A_handle_shrink_moves_the_entries_handles_and_the_table_is_cut()
    {
        const int Blocks = 40_000, Kept = 512;
        using ZramDevice device = Create(Blocks);
        for (int i = 0; i < Blocks; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, Distinct(i), fua: false));
        }

        ZramStats full = device.GetStats();
        Assert.Equal(NbdError.None, device.Trim(0, (long)(Blocks - Kept) * Page));
        device.Compact();
        ZramStats compacted = device.GetStats();

        // 8 bytes a cell: most of the 39,488 freed cells' pages go back.
        long expected = (Blocks - Kept - 4096) * 8L;
        Assert.True(full.MetadataBytes - compacted.MetadataBytes >= expected,
            $"metadata fell from {full.MetadataBytes} to {compacted.MetadataBytes}, less than {expected} bytes of handle cells");
        var back = new byte[Page];
        for (int i = Blocks - Kept; i < Blocks; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(Distinct(i)), $"block {i} reads back different");
        }

        // Shared entries too: a second copy of each kept page refers to the same entry, which still reads.
        for (int i = 0; i < Kept; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, Distinct(Blocks - Kept + i), fua: false));
        }

        device.Compact();
        for (int i = 0; i < Kept; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(Distinct(Blocks - Kept + i)), $"block {i} reads back different");
        }
    }

    /// <summary>
    /// Reads of shared entries on four threads while their entries' handles move: each round writes 20,000 filler pages
    /// (the low cells), then new contents into slots 0-511 (256 entries, each shared by two slots, in the high cells),
    /// trims the filler and compacts, so the shrink moves those 256 handles down under the readers. A handle moved
    /// under a read in flight would read another object (a wrong page) or freed memory.
    /// </summary>
    [Fact]
    public async Task Reads_of_shared_entries_see_their_pages_while_handles_move()
    {
        const int Shared = 256, Filler = 20_000;
        using ZramDevice device = Create((2 * Shared) + Filler);
        for (int i = 0; i < 2 * Shared; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, Versioned(i % Shared, 0), fua: false));
        }

        using var stop = new CancellationTokenSource();
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        long reads = 0;
        Task[] readers = Enumerable.Range(0, 4).Select(t => Task.Factory.StartNew(() =>
        {
            var random = new Random(t);
            var back = new byte[Page];
            while (!stop.IsCancellationRequested)
            {
                int i = random.Next(2 * Shared);
                bool read = device.Read((long)i * Page, back) == NbdError.None;
                int generation = BitConverter.ToInt32(back, 4);
                if (!read || !back.AsSpan().SequenceEqual(Versioned(i % Shared, generation)))
                {
                    failures.Enqueue($"slot {i} (generation {generation})");
                }

                Interlocked.Increment(ref reads);
            }
        }, TaskCreationOptions.LongRunning)).ToArray();

        long before = device.GetPoolStats().MetadataBytes;
        int rounds = 0;
        for (var clock = System.Diagnostics.Stopwatch.StartNew(); clock.Elapsed < TimeSpan.FromSeconds(4) || rounds < 3; rounds++)
        {
            for (int j = 0; j < Filler; j++)
            {
                Assert.Equal(NbdError.None, device.Write((long)((2 * Shared) + j) * Page, Versioned(Shared + j, rounds), fua: false));
            }

            for (int i = 0; i < 2 * Shared; i++)
            {
                Assert.Equal(NbdError.None, device.Write((long)i * Page, Versioned(i % Shared, rounds + 1), fua: false));
            }

            Assert.Equal(NbdError.None, device.Trim(2L * Shared * Page, (long)Filler * Page));
            device.Compact();
        }

        await stop.CancelAsync();
        await Task.WhenAll(readers);
        Assert.True(failures.IsEmpty, $"{failures.Count} of {reads} reads differed, first: {(failures.TryPeek(out string? f) ? f : null)}");
        // The pool's metadata (handle cells above all; the index's arrays stay grown): 8 bytes a cell, 20,000 cells
        // past the first pages if nothing was cut.
        Assert.True(device.GetPoolStats().MetadataBytes < before + (Filler * 4L), $"pool metadata {device.GetPoolStats().MetadataBytes} after the last shrink, {before} before the rounds: the shrinks cut nothing");
    }

    /// <summary>A page for content <paramref name="id"/> in <paramref name="generation"/>: both in its first 8 bytes,
    /// then 56 bytes from them, the rest zeros (compressible).</summary>
    private static byte[] Versioned(int id, int generation)
    {
        var page = new byte[Page];
        BitConverter.TryWriteBytes(page, id);
        BitConverter.TryWriteBytes(page.AsSpan(4), generation);
        new Random((id * 1_000_003) + generation).NextBytes(page.AsSpan(8, 56));
        return page;
    }

    /// <summary>A page no other index gives: its first 64 bytes from <paramref name="i"/>, the rest zeros (compressible).</summary>
    private static byte[] Distinct(int i)
    {
        var page = new byte[Page];
        new Random(i).NextBytes(page.AsSpan(0, 64));
        return page;
    }
}
