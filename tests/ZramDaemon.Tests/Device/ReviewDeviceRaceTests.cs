using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>
/// Review: writers owning disjoint blocks (full and partial writes, whole and partial trims, WRITE_ZEROES, reads checked
/// against a model) while another thread writes back, recompresses, marks idle, compacts and moves the memory limit over
/// the same blocks. Afterwards every block reads as the model says, and the mm_stat / bd_stat counters agree with what
/// the slot table holds (the kernel's counters describe the slots exactly: pages_stored, same_pages, huge_pages,
/// compr_data_size, bd_count).
/// </summary>
public sealed class ReviewDeviceRaceTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-review-race-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly byte[][] Shared = Enumerable.Range(0, 8).Select(i => MakeShared(i)).ToArray();

    private static byte[] MakeShared(int i)
    {
        var page = new byte[Page];
        new Random(1000 + i).NextBytes(page.AsSpan(0, i % 2 == 0 ? Page : 512));
        return page;
    }

    private static byte[] Content(Random random)
    {
        switch (random.Next(7))
        {
            case 0: return (byte[])DevicePages.TextPage(random.Next(1 << 20)).Clone();
            case 1:
                var r = new byte[Page];
                random.NextBytes(r);
                return r;
            case 2: return new byte[Page];
            case 3: return DevicePages.SameFilled((ulong)random.NextInt64());
            case 4: return DevicePages.SameFilled(0x1234567812345678UL);
            default: return (byte[])Shared[random.Next(Shared.Length)].Clone();
        }
    }

    [Theory]
    [InlineData(false, 0)]
    [InlineData(true, 0)]
    [InlineData(false, 1)]
    [InlineData(true, 1)]
    [InlineData(false, 2, true)]
    [InlineData(true, 3, true)]
    public void Writers_and_the_maintenance_verbs_on_the_same_blocks_keep_pages_and_counters_right(bool dedup, int seed, bool limit = false)
    {
        const int blocks = 1024;
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = blocks * Page,
            Dedup = dedup,
            RecompressAlgorithm = "zstd:3",
            BackingFile = Path.Combine(_dir, "wb"),
            CompactInterval = TimeSpan.FromMilliseconds(5),
            CompactThresholdPages = 1,
            MemLimit = limit ? ZramDevice.MinimumMemLimitFor(blocks * Page, dedup) + (1 << 20) : 0,
            RecompressIdleAfter = TimeSpan.FromMilliseconds(20),
            RecompressCpuPercent = 100,
            WritebackWatermarkPercent = 20,
            CompactWatermarkPercent = 50,
        }, NullLoggerFactory.Instance);
        long low = device.MinimumMemLimit + (1 << 20);

        const int writers = 2;
        var model = new byte[blocks][];
        for (int i = 0; i < blocks; i++)
        {
            model[i] = new byte[Page];
        }

        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        var threads = new List<Thread>();
        for (int w = 0; w < writers; w++)
        {
            int me = w;
            threads.Add(new Thread(() =>
            {
                var random = new Random((seed * 31) + me);
                var buffer = new byte[Page];
                while (!stop.IsCancellationRequested && failures.IsEmpty)
                {
                    int block = (random.Next(blocks / writers) * writers) + me;
                    long offset = (long)block * Page;
                    int op = random.Next(10);
                    NbdError error = NbdError.None;
                    switch (op)
                    {
                        case 0:
                        case 1:
                            byte[] content = Content(random);
                            error = device.Write(offset, content, fua: false);
                            if (error == NbdError.None)
                            {
                                model[block] = content;
                            }

                            break;
                        case 2:
                        {
                            int start = random.Next(8) * 512;
                            int length = random.Next(1, ((Page - start) / 512) + 1) * 512;
                            byte[] part = Content(random).AsSpan(0, length).ToArray();
                            error = device.Write(offset + start, part, fua: false);
                            if (error == NbdError.None)
                            {
                                byte[] next = (byte[])model[block].Clone();
                                part.CopyTo(next, start);
                                model[block] = next;
                            }

                            break;
                        }

                        case 3:
                            error = device.Trim(offset, Page);
                            if (error == NbdError.None)
                            {
                                model[block] = new byte[Page];
                            }

                            break;
                        case 4:
                        {
                            int start = random.Next(8) * 512;
                            int length = random.Next(1, ((Page - start) / 512) + 1) * 512;
                            bool trim = random.Next(2) == 0;
                            error = trim ? device.Trim(offset + start, length) : device.WriteZeroes(offset + start, length, noHole: random.Next(2) == 0, fastZero: false);
                            if (error == NbdError.None)
                            {
                                byte[] next = (byte[])model[block].Clone();
                                next.AsSpan(start, length).Clear();
                                model[block] = next;
                            }

                            break;
                        }

                        case 5:
                            error = device.WriteZeroes(offset, Page, noHole: random.Next(2) == 0, fastZero: false);
                            if (error == NbdError.None)
                            {
                                model[block] = new byte[Page];
                            }

                            break;
                        default:
                        {
                            int start = random.Next(2) == 0 ? 0 : random.Next(8) * 512;
                            int length = start == 0 ? Page : Page - start;
                            error = device.Read(offset + start, buffer.AsSpan(0, length));
                            if (error == NbdError.None && !buffer.AsSpan(0, length).SequenceEqual(model[block].AsSpan(start, length)))
                            {
                                failures.Enqueue($"block {block} read [{start}, {start + length}) differs from what was written");
                            }

                            break;
                        }
                    }

                    if (error != NbdError.None)
                    {
                        failures.Enqueue($"block {block} op {op}: {error}");
                    }
                }
            }));
        }

        threads.Add(new Thread(() =>
        {
            var random = new Random(seed + 77);
            while (!stop.IsCancellationRequested && failures.IsEmpty)
            {
                try
                {
                    switch (random.Next(limit ? 8 : 6))
                    {
                        case 7:
                            device.SetAlgorithm(random.Next(2) == 0 ? "lz4" : "zstd:1");
                            break;
                        case 6:
                            device.SetMemLimit(random.Next(2) == 0 ? low : low + (2 << 20));
                            break;
                        case 0:
                            device.Writeback((SlotSelection)random.Next(4), maxPages: random.Next(1, 64));
                            break;
                        case 1:
                            device.Recompress((SlotSelection)random.Next(4), maxPages: random.Next(1, 64));
                            break;
                        case 2:
                            device.MarkIdle();
                            break;
                        case 3:
                            device.Compact();
                            break;
                        case 4:
                            _ = device.GetStats();
                            break;
                        default:
                            device.AgeSlots(markAll: false);
                            break;
                    }
                }
                catch (Exception e)
                {
                    failures.Enqueue(e.ToString());
                }
            }
        }));

        foreach (Thread t in threads)
        {
            t.Start();
        }

        foreach (Thread t in threads)
        {
            t.Join();
        }

        Assert.Empty(failures);
        var read = new byte[Page];
        for (int i = 0; i < blocks; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, read));
            Assert.True(read.AsSpan().SequenceEqual(model[i]), $"block {i} differs after the run");
        }

        ReviewDeviceCounters.AssertMatchSlots(device);
    }
}

/// <summary>Recounts what the slot table holds and compares it with the device's counters (quiescent device).</summary>
internal static class ReviewDeviceCounters
{
    private static void Check(string name, long expected, long actual)
        => Assert.True(expected == actual, $"{name}: {actual}, the slots say {expected}");

    /// <summary>As <see cref="AssertMatchSlotsOnce"/>, tried again for a while: a write past the watermark wakes the
    /// background thread, which may be writing back or compacting while the slots are counted.</summary>
    public static void AssertMatchSlots(ZramDevice device)
    {
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                AssertMatchSlotsOnce(device);
                return;
            }
            catch (Xunit.Sdk.XunitException) when (attempt < 20)
            {
                Thread.Sleep(50);
            }
        }
    }

    public static void AssertMatchSlotsOnce(ZramDevice device)
    {
        device.FlushDeferredFrees();
        long written = 0, same = 0, huge = 0, compr = 0, writtenBack = 0, objects = 0, words = 0, deduped = 0;
        for (int i = 0; i < device.Slots.Count; i++)
        {
            device.Slots.Peek(i, out uint value, out uint info);
            if ((info & SlotInfo.Written) == 0)
            {
                continue;
            }

            written++;
            same += (info & SlotInfo.Same) != 0 ? 1 : 0;
            if (SlotInfo.HasObject(info))
            {
                objects++;
                compr += SlotInfo.Size(info);
                huge += (info & SlotInfo.Huge) != 0 ? 1 : 0;
            }

            words += SlotInfo.HasWord(info, value) ? 1 : 0;
            writtenBack += SlotInfo.IsWrittenBack(info) ? 1 : 0;
            deduped += SlotInfo.IsDeduped(info) ? 1 : 0;
        }

        ZramStats stats = device.GetStats();
        var pool = device.GetPoolStats();
        long entries = deduped - stats.DedupPages;
        Check("orig_data_size", written * ZramDevice.PageSize, stats.OrigDataSize);
        Check("same_pages", same, stats.SamePages);
        Check("bd_count", writtenBack, stats.BdCount);
        Check("pool words", words, pool.Words);
        Check("pool objects", objects + entries, pool.Objects);
        if (deduped == 0)
        {
            Check("compr_data_size", compr, stats.ComprDataSize);
            Check("huge_pages", huge, stats.HugePages);
        }
        else
        {
            Assert.True(stats.ComprDataSize >= compr, $"compr_data_size {stats.ComprDataSize} below the slots' own objects {compr}");
            Assert.True(stats.HugePages >= huge, $"huge_pages {stats.HugePages} below the slots' own huge objects {huge}");
        }
    }
}
