using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using Xunit.Abstractions;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>
/// Review (rev2) of BackingFile.DropCached (sync_file_range + posix_fadvise DONTNEED over the whole file), run after
/// every writeback run and by every background tick (here every 20 ms), while writers overwrite and read back pages
/// that the write path, the tick's watermark writeback and a writeback verb loop move to the file, a compaction loop
/// (with the handle shrink) runs, and freed blocks are punched and reused. Every read must return the page last
/// written there; the page cache the file's blocks take must be small once the device is idle.
/// </summary>
public sealed class Rev2WritebackDropCachedIntegrityTests(ITestOutputHelper output) : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-rev2-wb-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Written_back_pages_read_back_right_while_the_page_cache_is_dropped(bool dedup)
    {
        const int writers = 4;
        const int pagesPerWriter = 2048;
        long size = (long)writers * pagesPerWriter * Page;
        string path = Path.Combine(_dir, "zram0.wb");
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = size,
            MemLimit = 6L << 20,
            Dedup = dedup,
            BackingFile = path,
            CompactInterval = TimeSpan.FromMilliseconds(20),
        }, NullLoggerFactory.Instance);
        using var stop = new CancellationTokenSource();
        long verbWrites = 0;
        var verbs = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                verbWrites += device.Writeback(SlotSelection.All, maxPages: 256).WrittenBack;
                device.Compact();
                Thread.Sleep(5);
            }
        });
        verbs.Start();

        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var threads = Enumerable.Range(0, writers).Select(writer => new Thread(() =>
        {
            var random = new Random(writer + 17);
            var model = new long[pagesPerWriter];
            var page = new byte[Page];
            var read = new byte[Page];
            long first = (long)writer * pagesPerWriter;
            for (int op = 0; op < 12000 && errors.IsEmpty; op++)
            {
                int p = random.Next(pagesPerWriter);
                long seed = random.Next(4) == 0 ? 1 + random.Next(32) : 100 + (((long)writer << 32) | (uint)random.Next());
                Fill(page, seed);
                NbdError e = device.Write((first + p) * Page, page, fua: false);
                if (e != NbdError.None)
                {
                    errors.Enqueue($"writer {writer}: write of page {first + p} failed: {e}");
                    break;
                }

                model[p] = seed;
                Verify(random.Next(pagesPerWriter));
            }

            for (int p = 0; p < pagesPerWriter && errors.IsEmpty; p++)
            {
                Verify(p);
            }

            void Verify(int p)
            {
                NbdError e = device.Read((first + p) * Page, read);
                if (e != NbdError.None)
                {
                    errors.Enqueue($"writer {writer}: read of page {first + p} failed: {e}");
                    return;
                }

                Fill(page, model[p]);
                if (model[p] == 0 ? read.AsSpan().IndexOfAnyExcept((byte)0) >= 0 : !read.AsSpan().SequenceEqual(page))
                {
                    errors.Enqueue($"writer {writer}: page {first + p} read back wrong (expected seed {model[p]})");
                }
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(TimeSpan.FromMinutes(3)), "a writer hung");
        }

        stop.Cancel();
        Assert.True(verbs.Join(TimeSpan.FromMinutes(1)), "the writeback/compaction loop hung");
        // Idle: the next ticks (20 ms) drop what the last reads and writebacks left, once the background writeback,
        // which waits for the disk page by page, has brought usage under its watermark (seconds on a loaded machine).
        long cached = CachedPages(path);
        for (var idle = System.Diagnostics.Stopwatch.StartNew(); cached > 64 && idle.Elapsed < TimeSpan.FromSeconds(20); cached = CachedPages(path))
        {
            Thread.Sleep(100);
        }

        ZramStats stats = device.GetStats();
        output.WriteLine($"dedup={dedup}: bd_writes {stats.BdWrites}, bd_reads {stats.BdReads}, bd_count {stats.BdCount}, by the verb {verbWrites}; file pages cached when idle {cached}");
        Assert.True(errors.IsEmpty, string.Join("\n", errors.Take(10)));
        Assert.True(cached <= 64, $"dedup={dedup}: {cached} pages of the backing file stay in the page cache on an idle device ({stats.BdCount} blocks in use)");
        Assert.True(stats.BdWrites > 1000 && stats.BdReads > 100, $"precondition: pages went to the file and were read back ({stats.BdWrites} writes, {stats.BdReads} reads)");
    }

    private static long CachedPages(string path)
    {
        using var fincore = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("fincore", ["--noheadings", "--output", "PAGES", path]) { RedirectStandardOutput = true })!;
        string text = fincore.StandardOutput.ReadToEnd().Trim();
        fincore.WaitForExit();
        return long.Parse(text, System.Globalization.CultureInfo.InvariantCulture);
    }

    private static void Fill(byte[] page, long seed)
    {
        if (seed == 0)
        {
            Array.Clear(page);
            return;
        }

        DevicePages.TextPage((int)(seed % 256)).CopyTo(page, 0);
        BitConverter.TryWriteBytes(page.AsSpan(0, 8), seed);
        BitConverter.TryWriteBytes(page.AsSpan(3000, 8), ~seed);
    }
}
