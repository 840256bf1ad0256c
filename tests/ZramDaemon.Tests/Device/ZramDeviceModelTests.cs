using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Compression;
using ZramDaemon.Device;
using ZramDaemon.Device.Recompression;
using ZsAlloc;

namespace ZramDaemon.Tests.Device;

/// <summary>
/// The device against a plain byte array: random writes of every size and alignment (512-byte granularity up
/// to 128 KiB, spanning slots), trims, write-zeroes, flushes, reads and extent queries from several threads.
/// Requests that overlap are serialised by sector locks in the test (their order is the model's order); requests
/// that share a slot but not a sector run at the same time, so concurrent partial writes into one slot happen.
/// </summary>
public class ZramDeviceModelTests
{
    private const int Sector = 512;
    private const int SectorsPerPage = ZramDevice.PageSize / Sector;

    [Theory]
    [InlineData(1, "lz4")]
    [InlineData(4, "lz4")]
    [InlineData(4, "zstd")]
    [InlineData(4, "lz4", 8)] // a deferred-free queue of 8: most of a trimmed range is freed synchronously
    public void Random_requests_from_several_threads_match_a_byte_array_and_mm_stat_agrees(int threads, string algorithm, int queue = 32768)
    {
        const long size = 8L << 20;
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "model", DiskSize = size, Algorithm = algorithm, DeferredFreeCapacity = queue },
            NullLoggerFactory.Instance);
        var model = new byte[size];
        var stored = new bool[size / ZramDevice.PageSize];
        var sectorLocks = Enumerable.Range(0, (int)(size / Sector)).Select(_ => new object()).ToArray();
        int mismatches = 0;
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();

        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            var random = new Random(1000 + t);
            var extents = new BlockExtent[64];
            for (int op = 0; op < 1500; op++)
            {
                int sectors = random.Next(8) switch
                {
                    0 => random.Next(1, 8),                       // sub-page
                    1 => SectorsPerPage,                          // one page (maybe unaligned)
                    2 => random.Next(1, 257),                     // up to 128 KiB
                    _ => random.Next(1, 3) * SectorsPerPage,
                };
                // A third of the requests go to a hot 64 KiB, so that requests often share slots.
                long span = random.Next(3) == 0 ? Math.Max(sectors, 128) : size / Sector;
                long first = random.NextInt64(span - sectors + 1);
                if (random.Next(3) == 0)
                {
                    first -= first % SectorsPerPage; // many requests are page-aligned
                }

                long offset = first * Sector;
                int length = sectors * Sector;
                int kind = random.Next(100);
                (long lockFirst, long lockEnd) = Locked(first, sectors, wholePages: kind is >= 75 and < 84);
                for (long s = lockFirst; s < lockEnd; s++)
                {
                    Monitor.Enter(sectorLocks[s]);
                }

                try
                {
                    if (kind < 45)
                    {
                        byte[] data = DevicePages.Mixed(random, length);
                        Assert.Equal(NbdError.None, device.Write(offset, data, fua: random.Next(4) == 0));
                        data.CopyTo(model, offset);
                        MarkWritten(stored, offset, length);
                    }
                    else if (kind < 75)
                    {
                        var buffer = new byte[length];
                        Assert.Equal(NbdError.None, device.Read(offset, buffer));
                        if (!buffer.AsSpan().SequenceEqual(model.AsSpan((int)offset, length)))
                        {
                            Interlocked.Increment(ref mismatches);
                            failures.Enqueue($"read {offset}+{length} differs");
                        }
                    }
                    else if (kind < 84)
                    {
                        Assert.Equal(NbdError.None, device.Trim(offset, length));
                        Zero(model, stored, offset, length, keepAllocated: false, discard: true);
                    }
                    else if (kind < 93)
                    {
                        bool noHole = random.Next(2) == 0;
                        bool fastZero = random.Next(2) == 0;
                        if (fastZero && (offset % ZramDevice.PageSize != 0 || length % ZramDevice.PageSize != 0))
                        {
                            // Part of a page is no faster to zero than to write: refused, and nothing changes.
                            Assert.Equal(NbdError.NotSupported, device.WriteZeroes(offset, length, noHole, fastZero));
                        }
                        else
                        {
                            Assert.Equal(NbdError.None, device.WriteZeroes(offset, length, noHole, fastZero));
                            Zero(model, stored, offset, length, keepAllocated: noHole, discard: false);
                        }
                    }
                    else if (kind < 96)
                    {
                        Assert.Equal(NbdError.None, device.Flush());
                    }
                    else
                    {
                        CheckExtents(device, model, stored, offset, length, extents, failures);
                    }
                }
                finally
                {
                    for (long s = lockEnd - 1; s >= lockFirst; s--)
                    {
                        Monitor.Exit(sectorLocks[s]);
                    }
                }
            }
        });

        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(10)));
        Assert.Equal(0, mismatches);

        // Everything reads back.
        var all = new byte[size];
        Assert.Equal(NbdError.None, device.Read(0, all));
        Assert.True(all.AsSpan().SequenceEqual(model), "the whole device differs from the model");

        // mm_stat agrees with the model, computed page by page as the kernel counts.
        using var pool = new ZsPool();
        using var compressor = new Compressor(algorithm);
        var compressed = new byte[CompressionStream.BufferSize];
        long pagesStored = 0, same = 0, huge = 0, compr = 0;
        for (int page = 0; page < stored.Length; page++)
        {
            if (!stored[page])
            {
                continue;
            }

            pagesStored++;
            ReadOnlySpan<byte> content = model.AsSpan(page * ZramDevice.PageSize, ZramDevice.PageSize);
            if (ZramDevice.IsSameFilled(content, out _))
            {
                same++;
                continue;
            }

            int n = compressor.Compress(content, compressed.AsSpan(0, pool.HugeClassSize - 1));
            if (n == 0)
            {
                huge++;
                compr += ZramDevice.PageSize;
            }
            else
            {
                compr += n;
            }
        }

        ZramStats stats = device.GetStats();
        Assert.True(pagesStored > 100 && same > 10 && huge > 10, $"stored {pagesStored}, same {same}, huge {huge}: the mix is too thin");
        Assert.Equal(pagesStored * ZramDevice.PageSize, stats.OrigDataSize);
        Assert.Equal(same, stats.SamePages);
        Assert.Equal(huge, stats.HugePages);
        Assert.Equal(compr, stats.ComprDataSize);
        Assert.Equal(0, stats.FailedReads + stats.FailedWrites + stats.InvalidIo);
        Assert.True(stats.HugePagesSince >= huge);
        Assert.True(stats.MemUsedTotal >= stats.MetadataBytes + stats.ComprDataSize,
            $"mem_used_total {stats.MemUsedTotal} < metadata {stats.MetadataBytes} + compressed {stats.ComprDataSize}");
        Assert.True(stats.MemUsedMax >= stats.MemUsedTotal);

        // Once the queued frees are done, the pool holds exactly the stored objects (no handle lost, none freed twice).
        device.FlushDeferredFrees();
        ZsPoolStats pool2 = device.GetPoolStats();
        Assert.Equal(pagesStored - same, pool2.Objects);
        Assert.Equal(compr, pool2.BytesStored);
    }

    /// <summary>
    /// Every feature at once against the model: dedup, a memory limit far below the data with writeback to a backing
    /// file, background compaction and recompression (zstd with a dictionary), and the deferred-free queue, while
    /// writers, readers and trimmers run and one more thread asks for compaction, idle marking, recompression and
    /// writeback of every kind. Each feature has its own tests; this one is for how they meet (a slot written back while
    /// it is recompressed, a deduplicated object moved by compaction, an object freed through the queue while
    /// its content's index entry is looked up). Afterwards every byte reads back, the counters agree with the model,
    /// and once everything is trimmed nothing is left: no object, no backing block, no index entry.
    /// </summary>
    [Theory]
    [InlineData(-1)] // the deferred-free queue at its default capacity
    [InlineData(8)] // a queue of 8: most frees synchronous, some deferred
    [InlineData(0)] // no queue
    public void Every_feature_at_once_under_concurrent_requests_keeps_every_byte_and_leaks_nothing(int queue)
    {
        const long size = 16L << 20;
        const long limit = 2L << 20;
        const long HighestLimit = 8 * limit;
        string dir = Directory.CreateTempSubdirectory("zramd-everything-").FullName;
        try
        {
            using var device = new ZramDevice(new ZramDeviceOptions
            {
                Name = "everything",
                DiskSize = size,
                MemLimit = limit,
                BackingFile = Path.Combine(dir, "everything.wb"),
                Dedup = true,
                RecompressAlgorithm = "zstd:3",
                RecompressIdleAfter = TimeSpan.FromMilliseconds(20),
                RecompressCpuPercent = 100,
                RecompressDictionarySize = 16384,
                CompactInterval = TimeSpan.FromMilliseconds(10),
                DeferredFreeCapacity = queue < 0 ? null : queue,
            }, NullLoggerFactory.Instance);
            var model = new byte[size];
            var stored = new bool[size / ZramDevice.PageSize];
            var sectorLocks = Enumerable.Range(0, (int)(size / Sector)).Select(_ => new object()).ToArray();
            var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
            int writersLeft = 3;
            long maintenance = 0;

            // First, before any thread runs, pages recompressed with a dictionary, one every 16 slots, for the threads to
            // read, overwrite, trim and write back: whether a recompression under way finds room for a dictionary and
            // its tables depends on the data the writers left under the limit, which no seed fixes. Each text page has
            // bytes of its own (no dedup), and the limit is raised for the training only. The background recompressor
            // may take a page that went idle while the others were written, with no dictionary (too few candidates for
            // one yet), and leave fewer than the training needs (MinDictionarySamples, 256): the pages are written
            // again (a write makes a page a candidate again) until a pass trains one, a few rounds at most.
            device.SetMemLimit(HighestLimit);
            RecompressionResult first = default;
            long dictionaryPages = 0;
            for (int round = 0; round < 20 && dictionaryPages == 0; round++)
            {
                for (int i = 0; i < 256; i++)
                {
                    byte[] page = (byte[])DevicePages.TextPage(i).Clone();
                    BitConverter.TryWriteBytes(page.AsSpan(100, 4), i);
                    BitConverter.TryWriteBytes(page.AsSpan(104, 4), round);
                    long at = i * 16L * ZramDevice.PageSize;
                    Assert.Equal(NbdError.None, device.Write(at, page, fua: false));
                    page.CopyTo(model, at);
                    MarkWritten(stored, at, page.Length);
                }

                first = device.Recompress(SlotSelection.All);
                dictionaryPages = device.GetStats().RecompressDictPages;
            }

            Assert.True(dictionaryPages > 0, $"no page was recompressed with a dictionary in 20 rounds ({first.Recompressed} of {first.Candidates} recompressed in the last)");
            device.SetMemLimit(limit);

            // Halfway, the writers wait (a minute at most) until the maintenance thread has written back and compacted,
            // so that their second half meets both, whatever the scheduler did.
            using var maintained = new ManualResetEventSlim();

            RunThreads(4, t =>
            {
                var random = new Random(500 + t);
                if (t == 3)
                {
                    // The requests a user (or zramd's timers) make of the device while it serves.
                    while (Volatile.Read(ref writersLeft) > 0)
                    {
                        var type = (SlotSelection)random.Next(3);
                        switch (random.Next(9))
                        {
                            case 0: device.Compact(); break;
                            case 1: device.MarkIdle(); break;
                            case 2: device.Recompress(type, maxPages: 128); break;
                            case 3: device.Writeback(type, maxPages: 128); break;
                            case 4: device.FlushDeferredFrees(); break;
                            case 5: device.ResetMemUsedMax(); break;
                            case 6 when random.Next(20) == 0: device.SetAlgorithm(Algorithms[random.Next(Algorithms.Length)]); break;
                            // Mostly tight; sometimes room for the recompression dictionary (trained again once
                            // no slot uses the first) and its tables, which are made only if they fit.
                            case 7:
                                device.SetMemLimit(random.Next(3) switch { 0 => limit, 1 => 2 * limit, _ => HighestLimit });
                                break;
                            default: _ = device.GetStats(); _ = device.GetClassStats(); break;
                        }

                        maintenance++;
                        if (!maintained.IsSet && maintenance > 10)
                        {
                            ZramStats now = device.GetStats();
                            if (now.BdWrites > 0 && now.CompactionRuns > 0)
                            {
                                maintained.Set();
                            }
                        }
                    }

                    return;
                }

                var extents = new BlockExtent[64];
                try
                {
                    for (int op = 0; op < 2500; op++)
                    {
                        if (op == 1250)
                        {
                            maintained.Wait(TimeSpan.FromMinutes(1));
                        }

                        // Mostly whole pages, so that the same content often lands in several slots (dedup);
                        // some partial and unaligned requests of up to 64 KiB.
                        bool whole = random.Next(4) != 0;
                        int sectors = whole ? SectorsPerPage * random.Next(1, 5) : random.Next(1, 129);
                        long first = random.NextInt64((size / Sector) - sectors + 1);
                        if (whole)
                        {
                            first -= first % SectorsPerPage;
                        }

                        long offset = first * Sector;
                        int length = sectors * Sector;
                        int kind = random.Next(100);
                        (long lockFirst, long lockEnd) = Locked(first, sectors, wholePages: kind is >= 80 and < 90);
                        for (long s = lockFirst; s < lockEnd; s++)
                        {
                            Monitor.Enter(sectorLocks[s]);
                        }

                        try
                        {
                            if (kind < 50)
                            {
                                byte[] data = whole ? Pages(random, length) : DevicePages.Mixed(random, length);
                                NbdError written = device.Write(offset, data, fua: false);
                                if (written != NbdError.None)
                                {
                                    failures.Enqueue($"write {offset}+{length}: {written}");
                                    continue;
                                }

                                data.CopyTo(model, offset);
                                MarkWritten(stored, offset, length);
                            }
                            else if (kind < 80)
                            {
                                var buffer = new byte[length];
                                NbdError read = device.Read(offset, buffer);
                                if (read != NbdError.None || !buffer.AsSpan().SequenceEqual(model.AsSpan((int)offset, length)))
                                {
                                    failures.Enqueue($"read {offset}+{length}: {read}, or its data differs");
                                }
                            }
                            else if (kind < 90)
                            {
                                Assert.Equal(NbdError.None, device.Trim(offset, length));
                                TrimmedAtTheLimit(device, model, stored, offset, length, failures);
                            }
                            else if (kind < 95)
                            {
                                bool noHole = random.Next(2) == 0;
                                NbdError zeroed = device.WriteZeroes(offset, length, noHole, fastZero: false);
                                if (zeroed == NbdError.NoSpace && (offset % ZramDevice.PageSize != 0 || length % ZramDevice.PageSize != 0))
                                {
                                    // Zeroing part of a slot stores a new page, which may not fit under the limit:
                                    // then the range's contents are unknown, as after any failed write. Learn them.
                                    var now = new byte[length];
                                    Assert.Equal(NbdError.None, device.Read(offset, now));
                                    now.CopyTo(model, offset);
                                    continue;
                                }

                                Assert.Equal(NbdError.None, zeroed);
                                Zero(model, stored, offset, length, keepAllocated: noHole, discard: false);
                            }
                            else
                            {
                                CheckExtents(device, model, stored, offset, length, extents, failures);
                            }
                        }
                        finally
                        {
                            for (long s = lockEnd - 1; s >= lockFirst; s--)
                            {
                                Monitor.Exit(sectorLocks[s]);
                            }
                        }
                    }
                }
                finally
                {
                    Interlocked.Decrement(ref writersLeft);
                }
            });

            Assert.True(failures.IsEmpty, $"{failures.Count} failures:\n" + string.Join("\n", failures.Take(10)));
            var all = new byte[size];
            Assert.Equal(NbdError.None, device.Read(0, all));
            Assert.True(all.AsSpan().SequenceEqual(model), "the whole device differs from the model");

            ZramStats stats = device.GetStats();
            Assert.Equal(stored.Count(s => s) * (long)ZramDevice.PageSize, stats.OrigDataSize);
            Assert.Equal(0, stats.FailedReads + stats.FailedWrites + stats.InvalidIo);
            // Every feature really ran while the requests did (not after them).
            Assert.True(stats.BdWrites > 0 && stats.BdReads > 0, $"writeback: {stats.BdWrites} writes, {stats.BdReads} reads");
            Assert.True(stats.RecompressedPages > 0, "nothing was recompressed");
            Assert.True(stats.DedupPages > 0, "nothing was deduplicated");
            Assert.True(stats.CompactionRuns > 0, "compaction never ran");
            Assert.True(maintenance > 10, $"only {maintenance} maintenance requests");
            Assert.True(stats.MemUsedTotal <= HighestLimit, $"mem_used_total {stats.MemUsedTotal} is over the highest limit {HighestLimit}");

            // Trimming everything leaves nothing behind.
            Assert.Equal(NbdError.None, device.Trim(0, size));
            device.FlushDeferredFrees();
            device.Compact();
            stats = device.GetStats();
            ZsPoolStats pool = device.GetPoolStats();
            Assert.Equal((0L, 0L, 0L, 0L, 0L), (stats.OrigDataSize, stats.ComprDataSize, stats.BdCount, stats.DedupPages, stats.SamePages));
            Assert.Equal((0L, 0L, 0L), (pool.Objects, pool.BytesStored, pool.PagesUsed));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// What a trim at the memory limit leaves: its whole slots empty, and each partial slot either zeroed in the
    /// range or untouched (when its zeroed page did not fit). Checks that and brings the model up to date.
    /// </summary>
    private static void TrimmedAtTheLimit(ZramDevice device, byte[] model, bool[] stored, long offset, int length,
        System.Collections.Concurrent.ConcurrentQueue<string> failures)
    {
        var now = new byte[length];
        Assert.Equal(NbdError.None, device.Read(offset, now));
        long end = offset + length;
        for (long at = offset; at < end;)
        {
            long pageEnd = ((at / ZramDevice.PageSize) + 1) * ZramDevice.PageSize;
            int n = (int)(Math.Min(pageEnd, end) - at);
            ReadOnlySpan<byte> piece = now.AsSpan((int)(at - offset), n);
            bool zero = piece.IndexOfAnyExcept((byte)0) < 0;
            bool whole = n == ZramDevice.PageSize;
            if (!zero && (whole || !piece.SequenceEqual(model.AsSpan((int)at, n))))
            {
                failures.Enqueue($"trim {offset}+{length}: {n} bytes at {at} are neither zero nor {(whole ? "trimmed" : "as they were")}");
            }

            at += n;
        }

        // A partial page the trim leaves all zero is emptied, which needs no memory: never refused at the limit.
        Zero(model, stored, offset, length, keepAllocated: false, discard: true);
        now.CopyTo(model, offset);
    }

    private static readonly string[] Algorithms = ["lz4", "zstd:1", "lz4hc:9", "zstd:3"];

    /// <summary>Whole pages for the test above: a few text pages over and over (so dedup finds them), pages lz4
    /// cannot shrink but zstd can, random pages, and same-filled ones.</summary>
    private static byte[] Pages(Random random, int length)
    {
        var data = new byte[length];
        for (int at = 0; at < length; at += ZramDevice.PageSize)
        {
            Span<byte> page = data.AsSpan(at, ZramDevice.PageSize);
            switch (random.Next(10))
            {
                case < 5:
                    DevicePages.TextPage(random.Next(24)).CopyTo(page);
                    break;
                case 5:
                case 6:
                    Recompression.RecompressionTests.NibblePage(random).CopyTo(page);
                    break;
                case 7:
                    random.NextBytes(page);
                    break;
                case 8:
                    DevicePages.TextPage(random.Next(1 << 20)).CopyTo(page);
                    break;
                default:
                    page.Fill((byte)random.Next(2));
                    break;
            }
        }

        return data;
    }

    [Fact]
    public void Concurrent_partial_writes_into_the_same_slots_keep_every_byte()
    {
        const int pages = 4;
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "partial", DiskSize = pages * ZramDevice.PageSize }, NullLoggerFactory.Instance);
        var expected = new byte[pages * ZramDevice.PageSize];
        // Eight threads, each owning one 512-byte sector of every page, rewriting it over and over. Dedicated
        // threads released together, so the read-modify-writes really overlap (the thread pool would start them
        // one after another).
        using var start = new Barrier(SectorsPerPage);
        RunThreads(SectorsPerPage, t =>
        {
            var random = new Random(t);
            var data = new byte[Sector];
            var back = new byte[Sector];
            start.SignalAndWait();
            for (int round = 0; round < 1500; round++)
            {
                int page = random.Next(pages);
                long offset = ((long)page * ZramDevice.PageSize) + (t * Sector);
                switch (random.Next(4))
                {
                    case 0:
                        random.NextBytes(data);
                        break;
                    case 1:
                        DevicePages.TextPage(round).AsSpan(t * Sector, Sector).CopyTo(data);
                        break;
                    default:
                        // The same byte from every thread (or zeros) often makes the whole page same-filled:
                        // pool words and zero pages come and go under the same races.
                        data.AsSpan().Fill(random.Next(2) == 0 ? (byte)0x5a : (byte)0);
                        break;
                }

                Assert.Equal(NbdError.None, device.Write(offset, data, fua: false));
                data.CopyTo(expected, offset);
                Assert.Equal(NbdError.None, device.Read(offset, back));
                Assert.Equal(data, back);
            }
        });

        var all = new byte[expected.Length];
        Assert.Equal(NbdError.None, device.Read(0, all));
        Assert.Equal(expected, all);
    }

    /// <summary>Runs <paramref name="body"/> on dedicated threads and rethrows the first failure.</summary>
    private static void RunThreads(int count, Action<int> body)
    {
        Exception? failure = null;
        var threads = Enumerable.Range(0, count).Select(t => new Thread(() =>
        {
            try
            {
                body(t);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref failure, e, null);
            }
        })).ToList();
        threads.ForEach(thread => thread.Start());
        threads.ForEach(thread => thread.Join());
        if (failure != null)
        {
            throw new AggregateException(failure);
        }
    }

    /// <summary>The sectors a request locks in the model: its own, or for a trim every sector of the pages it touches,
    /// since whether a partial page ends all zero (and is emptied) depends on the whole page, which a request on its
    /// other sectors could otherwise change in the model while the device has already ordered the two.</summary>
    private static (long First, long End) Locked(long first, int sectors, bool wholePages)
    {
        long end = first + sectors;
        return wholePages
            ? (first - (first % SectorsPerPage), (end + SectorsPerPage - 1) / SectorsPerPage * SectorsPerPage)
            : (first, end);
    }

    private static void MarkWritten(bool[] stored, long offset, int length)
    {
        for (long page = offset / ZramDevice.PageSize; page <= (offset + length - 1) / ZramDevice.PageSize; page++)
        {
            stored[page] = true;
        }
    }

    /// <summary>The device's rules: whole pages are emptied (or kept as zero pages), partial pages zeroed in place; a
    /// trim (<paramref name="discard"/>) that leaves a partial page all zero empties it, unless it was all zero already
    /// (then nothing changes: a stored zero page stays stored).</summary>
    private static void Zero(byte[] model, bool[] stored, long offset, int length, bool keepAllocated, bool discard)
    {
        long end = offset + length;
        long firstPage = offset / ZramDevice.PageSize;
        long lastPage = (end - 1) / ZramDevice.PageSize;
        Array.Clear(model, (int)offset, length);
        for (long page = firstPage; page <= lastPage; page++)
        {
            long start = page * ZramDevice.PageSize;
            if (start >= offset && start + ZramDevice.PageSize <= end)
            {
                stored[page] = keepAllocated;
            }
            else if (discard && PageIsZero(model, page))
            {
                stored[page] = false;
            }
        }
    }

    private static bool PageIsZero(byte[] model, long page) =>
        model.AsSpan((int)(page * ZramDevice.PageSize), ZramDevice.PageSize).IndexOfAnyExcept((byte)0) < 0;

    private static void CheckExtents(ZramDevice device, byte[] model, bool[] stored, long offset, int length,
        BlockExtent[] extents, System.Collections.Concurrent.ConcurrentQueue<string> failures)
    {
        int count = device.GetExtents(offset, length, extents);
        long pos = offset;
        for (int i = 0; i < count; i++)
        {
            for (long b = pos; b < pos + extents[i].Length; b += Sector)
            {
                long page = b / ZramDevice.PageSize;
                if (page * ZramDevice.PageSize < offset || (page + 1) * ZramDevice.PageSize > offset + length)
                {
                    // Only part of this slot's sectors are locked: a request on the others may change it meanwhile.
                    continue;
                }

                bool zeroSlot = !stored[page] || model.AsSpan((int)(page * ZramDevice.PageSize), ZramDevice.PageSize).IndexOfAnyExcept((byte)0) < 0;
                bool reportedZero = extents[i].Flags == (ExtentFlags.Hole | ExtentFlags.Zero);
                // A stored all-zero page is always same-filled with 0, so it reports as a hole too.
                if (zeroSlot != reportedZero)
                {
                    failures.Enqueue($"extent at {b}: reported {extents[i].Flags}, slot zero={zeroSlot}");
                    return;
                }
            }

            pos += extents[i].Length;
        }

        if (count == 0 || pos > offset + length)
        {
            failures.Enqueue($"extents for {offset}+{length} cover {pos - offset} bytes in {count} extents");
        }
    }
}
