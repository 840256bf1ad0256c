using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Recompression;

namespace ZramDaemon.Tests.Device.Recompression;

/// <summary>Recompression with a zstd dictionary trained from the device's own idle pages (recompress-dictionary).</summary>
public sealed class DictionaryRecompressionTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-dictionary-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private ZramDevice Create(int dictionary, long size = 8L << 20, bool backing = false, string algorithm = "zstd:6")
        => new(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = size,
            Algorithm = "lz4",
            RecompressAlgorithm = algorithm,
            RecompressDictionarySize = dictionary,
            BackingFile = backing ? Path.Combine(_dir, "zram0.wb") : null,
        }, NullLoggerFactory.Instance);

    /// <summary>Text pages, each with a few bytes of its own, so that no two slots hold the same page.</summary>
    private static byte[][] Pages(int count, int seed)
        => Enumerable.Range(0, count).Select(i =>
        {
            byte[] page = (byte[])DevicePages.TextPage(i + seed).Clone();
            BitConverter.TryWriteBytes(page.AsSpan(100, 4), i + seed);
            return page;
        }).ToArray();

    private static void Write(ZramDevice device, byte[][] pages)
    {
        for (int i = 0; i < pages.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, pages[i], fua: false));
        }
    }

    private static void AssertReads(ZramDevice device, byte[][] pages)
    {
        var back = new byte[Page];
        for (int i = 0; i < pages.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(pages[i]), $"page {i} reads back different");
        }
    }

    [Fact]
    public void Idle_pages_recompressed_with_a_trained_dictionary_are_smaller_than_without_and_read_back()
    {
        byte[][] pages = Pages(1024, 0);
        using ZramDevice plain = Create(dictionary: 0);
        using ZramDevice device = Create(dictionary: 32 << 10);
        Write(plain, pages);
        Write(device, pages);
        plain.MarkIdle();
        device.MarkIdle();
        long metadataBefore = device.GetStats().MetadataBytes;

        RecompressionResult without = plain.Recompress(SlotSelection.Idle);
        RecompressionResult with = device.Recompress(SlotSelection.Idle);
        ZramStats stats = device.GetStats();
        Assert.True(with.BytesSaved > without.BytesSaved * 11 / 10, $"saved {with.BytesSaved} bytes with the dictionary, {without.BytesSaved} without");
        Assert.Equal(with.Recompressed, stats.RecompressDictPages);
        Assert.Equal(0, plain.GetStats().RecompressDictPages);
        Assert.Equal(0, plain.GetStats().RecompressDictBytes);
        // The dictionary's memory counts in mem_used_total (as metadata); its compression tables went after the run.
        Assert.InRange(stats.RecompressDictBytes, 4096, 3L << 20);
        Assert.True(stats.MetadataBytes >= metadataBefore + stats.RecompressDictBytes - 4096);
        AssertReads(device, pages);

        // Compaction moves the objects; they still read back with the dictionary.
        device.Compact();
        AssertReads(device, pages);
    }

    [Fact]
    public void Overwrites_trims_partial_writes_and_writeback_of_dictionary_slots_keep_every_page_right()
    {
        byte[][] pages = Pages(1024, 7);
        using ZramDevice device = Create(dictionary: 32 << 10, backing: true);
        Write(device, pages);
        device.MarkIdle();
        long recompressed = device.Recompress(SlotSelection.Idle).Recompressed;
        Assert.True(recompressed > 512, $"only {recompressed} pages recompressed");

        var random = new Random(3);
        var model = (byte[][])pages.Clone();
        long users = recompressed;
        for (int op = 0; op < 600; op++)
        {
            int i = random.Next(pages.Length);
            switch (random.Next(3))
            {
                case 0:
                    Assert.Equal(NbdError.None, device.Trim((long)i * Page, Page));
                    model[i] = new byte[Page];
                    break;
                case 1:
                    model[i] = (byte[])DevicePages.TextPage(random.Next(1000)).Clone();
                    Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
                    break;
                default:
                    // Read-modify-write: the old page comes out through the dictionary.
                    byte[] part = RecompressionTests.NibblePage(random).AsSpan(0, 512).ToArray();
                    Assert.Equal(NbdError.None, device.Write(((long)i * Page) + 1024, part, fua: false));
                    model[i] = (byte[])model[i].Clone();
                    part.CopyTo(model[i].AsSpan(1024));
                    break;
            }
        }

        ZramStats afterOps = device.GetStats();
        Assert.InRange(afterOps.RecompressDictPages, 1, users - 1);
        AssertReads(device, model);
        device.Compact();
        AssertReads(device, model);

        // Written-back dictionary slots are read from the file and decompressed with the dictionary.
        Assert.True(device.Writeback(SlotSelection.All).WrittenBack > 0);
        Assert.Equal(afterOps.RecompressDictPages, device.GetStats().RecompressDictPages);
        AssertReads(device, model);
    }

    [Fact]
    public void Reset_drops_the_dictionary_with_the_data_and_the_next_recompression_trains_another()
    {
        using ZramDevice device = Create(dictionary: 32 << 10);
        Write(device, Pages(1024, 0));
        device.MarkIdle();
        Assert.True(device.Recompress(SlotSelection.Idle).Recompressed > 0);
        ZramStats before = device.GetStats();
        Assert.True(before.RecompressDictBytes > 0);

        device.Reset();
        ZramStats reset = device.GetStats();
        Assert.Equal(0, reset.RecompressDictPages);
        Assert.Equal(0, reset.RecompressDictBytes);
        // Its memory left mem_used_total (the pool's cells stay allocated for reuse, as after any reset).
        Assert.True(reset.MetadataBytes <= before.MetadataBytes - before.RecompressDictBytes);

        byte[][] other = Pages(800, 300);
        Write(device, other);
        device.MarkIdle();
        RecompressionResult again = device.Recompress(SlotSelection.Idle);
        Assert.True(again.Recompressed > 0);
        Assert.Equal(again.Recompressed, device.GetStats().RecompressDictPages);
        Assert.True(device.GetStats().RecompressDictBytes > 0);
        AssertReads(device, other);
    }

    /// <summary>
    /// The dictionary and its compression tables count in mem_used_total, so they are made only when they fit under
    /// the limit, as an allocation is. The tables were made on the first recompression whatever the limit, and kept
    /// while the pass went on (at zstd:9, 400 KiB with a 16 KiB dictionary, 12 MiB with 512 KiB): usage went past
    /// the limit, and every write then had to make room for them, or failed with ENOSPC without a backing file.
    /// </summary>
    [Fact]
    public void The_dictionary_and_its_compression_tables_are_made_only_if_they_fit_under_the_limit()
    {
        byte[][] pages = Pages(1024, 0);
        using ZramDevice device = Create(dictionary: 64 << 10, algorithm: "zstd:9");
        Write(device, pages);
        device.Compact();
        device.MarkIdle();
        // Room for the dictionary and its decompression copy (some 100 KiB), not for the compression tables.
        long limit = device.MemUsedTotal + (256 << 10);
        device.SetMemLimit(limit);

        // One slot's work: the background recompressor's pass goes on later, holding what it made.
        int cursor = 0;
        Assert.False(device.RecompressSlice(ref cursor, SlotSelection.Idle, TimeSpan.Zero, out bool stoppedByLimit));
        Assert.False(stoppedByLimit);
        ZramStats stats = device.GetStats();
        Assert.InRange(stats.RecompressDictBytes, 64 << 10, 256 << 10);
        Assert.True(device.MemUsedTotal <= limit, $"mem_used_total {device.MemUsedTotal} past the limit {limit} during the pass");
        Assert.Equal(1, stats.RecompressedPages);
        Assert.Equal(0, stats.RecompressDictPages);

        // A write still fits (no backing file: it would fail with ENOSPC), and the rest of the pass recompresses
        // without the dictionary (until the pool is too full for a new object before the old one goes).
        byte[][] more = Pages(16, 5000);
        for (int i = 0; i < more.Length; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)(pages.Length + i) * Page, more[i], fua: false));
        }

        while (!device.RecompressSlice(ref cursor, SlotSelection.Idle, TimeSpan.FromSeconds(10), out stoppedByLimit) && !stoppedByLimit)
        {
        }

        stats = device.GetStats();
        Assert.True(stats.RecompressedPages > 16, $"{stats.RecompressedPages} pages recompressed");
        Assert.Equal(0, stats.RecompressDictPages);
        Assert.Equal(0, stats.FailedWrites);
        // A recompression's new object may take usage two pages and a new arena's page map past the limit before the
        // old one is freed (a device full at its limit must be able to recompress); the dictionary's tables (some
        // 400 KiB) get none of that room.
        Assert.True(device.MemUsedTotal <= limit + Page + ZsAlloc.ZsPool.FirstObjectBytes, $"mem_used_total {device.MemUsedTotal} past the limit {limit} and the recompression headroom after the pass");
        AssertReads(device, pages.Concat(more).ToArray());

        // With room again, the next pass makes the tables and uses them.
        device.SetMemLimit(0);
        device.MarkIdle();
        byte[][] later = Pages(512, 9000);
        Write(device, later);
        device.MarkIdle();
        Assert.True(device.Recompress(SlotSelection.Idle).Recompressed > 0);
        Assert.True(device.GetStats().RecompressDictPages > 0);
        AssertReads(device, later);
    }

    /// <summary>
    /// With dedup, the candidates counted include slots that share a page, which cannot be sampled: the samples were
    /// every n-th candidate only, and when those were shared the dictionary was never trained ("too few pages").
    /// Here every 8th slot shares one page and the sampling step is 16.
    /// </summary>
    [Fact]
    public void On_a_dedup_device_the_dictionary_is_trained_from_the_pages_no_other_slot_shares()
    {
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 16L << 20,
            Algorithm = "lz4",
            Dedup = true,
            RecompressAlgorithm = "zstd:6",
            RecompressDictionarySize = 16 << 10,
        }, NullLoggerFactory.Instance);
        byte[][] unique = Pages(4096, 0);
        byte[] shared = Pages(1, 99999)[0];
        byte[][] pages = Enumerable.Range(0, 4096).Select(i => i % 8 == 0 ? shared : unique[i]).ToArray();
        Write(device, pages);
        device.MarkIdle();

        Assert.True(device.Recompress(SlotSelection.Idle).Recompressed > 0);
        ZramStats stats = device.GetStats();
        Assert.True(stats.RecompressDictBytes > 0, "no dictionary was trained");
        Assert.True(stats.RecompressDictPages > 0);
        AssertReads(device, pages);
    }

    /// <summary>
    /// recompress_dict_bytes (and mem_used_total, which every write under a limit reads) asks ZSTD_sizeof_CDict about
    /// the compression tables while the recompression thread frees them at the end of each pass
    /// (ZstdDictionary.MemoryBytes reads _cdict, then calls into zstd with it: a use-after-free). Only two answers are
    /// honest, with the tables or without them; a freed CDict answers something else (or faults, if it was unmapped).
    /// </summary>
    [Fact]
    public void Mem_used_total_read_while_passes_make_and_drop_the_compression_tables_never_reads_a_freed_CDict()
    {
        using ZramDevice device = Create(dictionary: 32 << 10, size: 4L << 20);
        Write(device, Pages(1024, 0));
        device.MarkIdle();
        Assert.True(device.Recompress(SlotSelection.Idle).Recompressed > 0);
        Assert.True(device.GetStats().RecompressDictBytes > 0);
        device.FlushDeferredFrees();
        // Nothing else changes from here on: mem_used_total moves only with the dictionary's tables.
        long without = device.MemUsedTotal;

        var odd = new System.Collections.Concurrent.ConcurrentDictionary<long, int>();
        var values = new System.Collections.Concurrent.ConcurrentDictionary<long, int>();
        long passes = 0;
        long withTables = 0;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        var reader = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                long used = device.MemUsedTotal;
                values.AddOrUpdate(used, 1, (_, c) => c + 1);
                if (used >= without + (64 << 10) && Interlocked.CompareExchange(ref withTables, used, 0) is long first && first != 0 && first != used)
                {
                    stop.Cancel();
                }
                else if (used != without && used < without + (64 << 10))
                {
                    stop.Cancel(); // a wrong answer: no need to look further
                }
            }
        });
        reader.Start();
        while (!stop.IsCancellationRequested)
        {
            // Every slot is marked dealt with: a pass only makes the tables, looks at each slot and drops them.
            device.Recompress(SlotSelection.Idle);
            passes++;
        }

        reader.Join();
        // The tables cost hundreds of KiB: an honest reading is either "without" or "without + tables" (one value).
        Assert.True(values.Keys.All(v => v == without || v == Interlocked.Read(ref withTables)),
            $"after {passes} passes mem_used_total was {string.Join(", ", values.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key} ({kv.Value}x)"))}; without the tables it is {without}");
    }

    [Fact]
    public void Too_few_idle_pages_for_a_dictionary_are_recompressed_without_one()
    {
        byte[][] pages = Pages(100, 0);
        using ZramDevice device = Create(dictionary: 32 << 10);
        Write(device, pages);
        device.MarkIdle();
        Assert.True(device.Recompress(SlotSelection.Idle).Recompressed > 0);
        ZramStats stats = device.GetStats();
        Assert.Equal(0, stats.RecompressDictPages);
        Assert.Equal(0, stats.RecompressDictBytes);
        AssertReads(device, pages);
    }

    [Theory]
    [InlineData("lz4hc", 32768)]
    [InlineData("zstd:3", 100)]
    [InlineData("zstd:3", 8 << 20)]
    public void A_dictionary_needs_zstd_and_a_sensible_size(string algorithm, int size)
        => Assert.Throws<ArgumentException>(() => Create(size, algorithm: algorithm));
}
