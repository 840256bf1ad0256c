using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Tests.Device;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (compression): every algorithm path at once. A zstd device (reads need a stream or decoder, and the
/// recompression algorithm's pages decode in the primary's streams) whose comp_algorithm switches among zstd:1, lz4hc:4,
/// lz4 and zstd:5 while four threads write (whole and partial pages, text and high-entropy), trim and read, and an
/// admin thread marks idle, recompresses (with a trained zstd dictionary; also type=huge with a threshold), writes idle
/// pages back and compacts, with the background recompressor at full budget. Every read must return the last write,
/// and the counters must match the slots at the end. Passes on the current code.
/// </summary>
public sealed class RevCompConcurrentIntegrityTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-revcomp-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Algorithm_switches_recompression_with_a_dictionary_and_writeback_under_io_keep_every_page(bool dedup)
    {
        const int slots = 512;
        string[] algorithms = ["zstd:1", "lz4hc:4", "lz4", "zstd:5"];
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = slots * Page,
            Algorithm = "zstd:1",
            Dedup = dedup,
            RecompressAlgorithm = "zstd:7",
            RecompressDictionarySize = 16384,
            RecompressIdleAfter = TimeSpan.FromMilliseconds(20),
            RecompressCpuPercent = 100,
            BackingFile = Path.Combine(_dir, "wb"),
        }, NullLoggerFactory.Instance);
        var model = new byte[slots][];
        var locks = Enumerable.Range(0, slots).Select(_ => new object()).ToArray();
        for (int i = 0; i < slots; i++)
        {
            model[i] = (byte[])DevicePages.TextPage(i).Clone();
            Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
        }

        using var stop = new CancellationTokenSource();
        int mismatches = 0;
        string? first = null;
        var admin = Task.Factory.StartNew(() =>
        {
            var random = new Random(5);
            while (!stop.IsCancellationRequested)
            {
                switch (random.Next(5))
                {
                    case 0:
                        device.SetAlgorithm(algorithms[random.Next(algorithms.Length)]);
                        break;
                    case 1:
                        device.MarkIdle();
                        device.Recompress(SlotSelection.All);
                        break;
                    case 2:
                        // Marked first: a recompression pass clears the marks of the slots it tries, so idle slots were
                        // left only by a pass cut short, which a loaded machine made rare enough that a run of 4 s wrote
                        // none back (CI, 7 December, with dedup).
                        device.MarkIdle();
                        device.Writeback(SlotSelection.Idle, maxPages: 20);
                        break;
                    case 3:
                        device.Compact();
                        break;
                    default:
                        device.Recompress(SlotSelection.Huge, threshold: 1000);
                        break;
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        // 4 s, and on a loaded machine until the run has both recompressed and written back (the admin thread's first
        // writeback is its fifth step, after three recompressions at zstd:7), at most 60 s.
        Task stopper = Task.Run(async () =>
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromSeconds(4) || (clock.Elapsed < TimeSpan.FromSeconds(60) && !DidBoth(device.GetStats())))
            {
                await Task.Delay(50);
            }

            await stop.CancelAsync();
        });
        Parallel.For(0, 4, t =>
        {
            var random = new Random(177 + t);
            var back = new byte[Page];
            while (!stop.IsCancellationRequested)
            {
                int i = random.Next(slots);
                lock (locks[i])
                {
                    switch (random.Next(10))
                    {
                        case 0:
                            Assert.Equal(NbdError.None, device.Trim((long)i * Page, Page));
                            model[i] = new byte[Page];
                            break;
                        case < 4:
                            byte[] data = random.Next(4) == 0 ? RandomNibbles(random) : (byte[])DevicePages.TextPage(random.Next(1000)).Clone();
                            int at = random.Next(2) == 0 ? 0 : 512 * random.Next(8);
                            int length = at == 0 ? Page : Page - at;
                            Assert.Equal(NbdError.None, device.Write(((long)i * Page) + at, data.AsSpan(at, length), fua: false));
                            var next = (byte[])model[i].Clone();
                            data.AsSpan(at, length).CopyTo(next.AsSpan(at));
                            model[i] = next;
                            break;
                        default:
                            NbdError e = device.Read((long)i * Page, back);
                            if (e != NbdError.None || !back.AsSpan().SequenceEqual(model[i]))
                            {
                                Interlocked.Increment(ref mismatches);
                                Interlocked.CompareExchange(ref first, $"slot {i}: {e}", null);
                            }

                            break;
                    }
                }
            }
        });
        await admin;
        await stopper;
        Assert.True(mismatches == 0, $"{mismatches} mismatches, first {first}");
        var back2 = new byte[Page];
        for (int i = 0; i < slots; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back2));
            Assert.True(back2.AsSpan().SequenceEqual(model[i]), $"slot {i}");
        }

        ZramStats s = device.GetStats();
        Assert.True(DidBoth(s), $"the run recompressed {s.RecompressedPages} and wrote back {s.BdWrites} pages: it must do both");
        ReviewDeviceCounters.AssertMatchSlots(device);
    }

    private static bool DidBoth(ZramStats stats) => stats.RecompressedPages > 0 && stats.BdWrites > 0;

    private static byte[] RandomNibbles(Random random)
    {
        var page = new byte[Page];
        random.NextBytes(page);
        for (int i = 0; i < page.Length; i++)
        {
            page[i] &= 0x0f;
        }

        return page;
    }
}
