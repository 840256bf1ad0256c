using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Compression;
using ZramDaemon.Device;
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
                for (long s = first; s < first + sectors; s++)
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
                        Zero(model, stored, offset, length, keepAllocated: false);
                    }
                    else if (kind < 93)
                    {
                        bool noHole = random.Next(2) == 0;
                        Assert.Equal(NbdError.None, device.WriteZeroes(offset, length, noHole, fastZero: random.Next(2) == 0));
                        Zero(model, stored, offset, length, keepAllocated: noHole);
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
                    for (long s = first + sectors - 1; s >= first; s--)
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

    private static void MarkWritten(bool[] stored, long offset, int length)
    {
        for (long page = offset / ZramDevice.PageSize; page <= (offset + length - 1) / ZramDevice.PageSize; page++)
        {
            stored[page] = true;
        }
    }

    /// <summary>The device's rules: whole pages are emptied (or kept as zero pages), partial pages zeroed in place.</summary>
    private static void Zero(byte[] model, bool[] stored, long offset, int length, bool keepAllocated)
    {
        Array.Clear(model, (int)offset, length);
        long end = offset + length;
        for (long page = offset / ZramDevice.PageSize; page * ZramDevice.PageSize < end; page++)
        {
            long start = page * ZramDevice.PageSize;
            if (start >= offset && start + ZramDevice.PageSize <= end)
            {
                stored[page] = keepAllocated;
            }
        }
    }

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
