using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using Xunit.Abstractions;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device.Dedup;

/// <summary>
/// Review (rev2) of the dedup index on mappings (MappedArray: Grow copies into a new mapping and unmaps the old one,
/// Shrink unmaps both and maps the first size again). Four writers, each on its own quarter of the device,
/// write pages that are shared across writers (a few patterns) and pages of their own (so the index grows from 1024
/// entries through several doublings), read them back, and now and then discard their whole quarter; a fifth
/// thread compacts (DedupIndex.Shrink + the handle shrink, MoveHandles) in a loop. Each round ends with every quarter
/// discarded at once (the index empties, the next compaction unmaps it) and the next round grows it again. Every
/// read must return what its writer last wrote; the index's metadata must be back to its first size after the last
/// discard and compaction.
/// </summary>
public sealed class Rev2DedupMappedArrayStressTests(ITestOutputHelper output)
{
    [Fact]
    public void Shared_and_unique_pages_survive_index_growths_and_shrinks_under_concurrent_io_and_compaction()
    {
        const int writers = 4;
        const int pagesPerWriter = 4096;
        const int rounds = 6;
        long size = (long)writers * pagesPerWriter * ZramDevice.PageSize;
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = size, Dedup = true }, NullLoggerFactory.Instance);
        long freshMetadata = device.GetStats().MetadataBytes;
        long freshPool = device.GetPoolStats().MetadataBytes;
        using var stop = new CancellationTokenSource();
        int compactions = 0;
        long peakIndexPart = 0; // slots + index: what grows with the index
        var compactor = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                long part = device.GetStats().MetadataBytes - device.GetPoolStats().MetadataBytes;
                peakIndexPart = Math.Max(peakIndexPart, part);
                device.Compact();
                Interlocked.Increment(ref compactions);
                Thread.Sleep(2);
            }
        });
        compactor.Start();

        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var barrier = new Barrier(writers);
        var threads = new Thread[writers];
        for (int w = 0; w < writers; w++)
        {
            int writer = w;
            threads[w] = new Thread(() =>
            {
                var random = new Random(writer * 7919);
                var model = new long[pagesPerWriter]; // 0: never written or discarded; else the page's seed
                var page = new byte[ZramDevice.PageSize];
                var read = new byte[ZramDevice.PageSize];
                long first = (long)writer * pagesPerWriter;
                for (int round = 0; round < rounds && errors.IsEmpty; round++)
                {
                    for (int op = 0; op < 3 * pagesPerWriter && errors.IsEmpty; op++)
                    {
                        int p = random.Next(pagesPerWriter);
                        long offset = (first + p) * ZramDevice.PageSize;
                        if (random.Next(1000) == 0)
                        {
                            Check(device.Trim(first * ZramDevice.PageSize, (long)pagesPerWriter * ZramDevice.PageSize), "trim");
                            Array.Clear(model);
                            continue;
                        }

                        // Half the writes share one of 64 patterns with every writer; the rest are the writer's own.
                        long seed = random.Next(2) == 0 ? 1 + random.Next(64) : 1000 + (((long)writer << 32) | (uint)random.Next());
                        Fill(page, seed);
                        Check(device.Write(offset, page, fua: false), "write");
                        model[p] = seed;
                        int q = random.Next(pagesPerWriter);
                        Verify(q);
                    }

                    for (int p = 0; p < pagesPerWriter && errors.IsEmpty; p++)
                    {
                        Verify(p);
                    }

                    // All at once: the whole device discarded, the index empties, the compactor cuts it back.
                    barrier.SignalAndWait();
                    Check(device.Trim(first * ZramDevice.PageSize, (long)pagesPerWriter * ZramDevice.PageSize), "trim");
                    Array.Clear(model);
                    barrier.SignalAndWait();
                    Thread.Sleep(50);
                    barrier.SignalAndWait();
                }

                void Verify(int p)
                {
                    Check(device.Read((first + p) * ZramDevice.PageSize, read), "read");
                    if (model[p] == 0 ? read.AsSpan().IndexOfAnyExcept((byte)0) >= 0 : !Matches(read, model[p]))
                    {
                        errors.Enqueue($"writer {writer}: page {first + p} read back wrong (expected seed {model[p]})");
                    }
                }

                void Check(NbdError error, string what)
                {
                    if (error != NbdError.None)
                    {
                        errors.Enqueue($"writer {writer}: {what} failed: {error}");
                    }
                }
            });
            threads[w].Start();
        }

        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(TimeSpan.FromMinutes(3)), "a writer hung");
        }

        stop.Cancel();
        Assert.True(compactor.Join(TimeSpan.FromMinutes(1)), "the compactor hung");
        Assert.True(errors.IsEmpty, string.Join("\n", errors.Take(10)));
        device.Compact();
        ZramStats after = device.GetStats();
        ZsAlloc.ZsPoolStats pool = device.GetPoolStats();
        output.WriteLine($"{compactions} compactions; peak slots + index {peakIndexPart}; metadata fresh {freshMetadata} (pool {freshPool}), after {after.MetadataBytes} (pool {pool.MetadataBytes}, handle cells {pool.HandleCells})");
        Assert.Equal(0, after.OrigDataSize);
        Assert.True(peakIndexPart >= freshMetadata - freshPool + (2 * ZramDaemon.Device.Dedup.DedupIndex.InitialMetadataBytes),
            $"precondition: the index grew through several doublings (peak slots + index {peakIndexPart}, fresh {freshMetadata - freshPool})");
        // Slots and the index (no dictionary here): the index is back to its first mapping.
        Assert.Equal(freshMetadata - freshPool, after.MetadataBytes - pool.MetadataBytes);
    }

    private static void Fill(byte[] page, long seed)
    {
        DevicePages.TextPage((int)(seed % 256)).CopyTo(page, 0);
        BitConverter.TryWriteBytes(page.AsSpan(0, 8), seed);
        BitConverter.TryWriteBytes(page.AsSpan(2048, 8), ~seed);
    }

    private static bool Matches(byte[] read, long seed)
    {
        var expected = new byte[ZramDevice.PageSize];
        Fill(expected, seed);
        return read.AsSpan().SequenceEqual(expected);
    }
}
