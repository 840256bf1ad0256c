using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>
/// Review: two writers overwrite, trim and read the same few blocks with a handful of contents (so that, with dedup,
/// the blocks share entries) while a third thread writes back, recompresses, marks idle and compacts them. Every read
/// returns one of the contents written (or zeros), each block ends with the last content one of the writers wrote to
/// it, and the counters match the slots.
/// </summary>
public sealed class ReviewDeviceSameBlockTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-review-same-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] Content(int i)
    {
        if (i == 0)
        {
            return new byte[Page];
        }

        var page = (byte[])DevicePages.TextPage(i).Clone();
        if (i % 3 == 0)
        {
            new Random(i).NextBytes(page); // huge
        }

        page[0] = (byte)i;
        return page;
    }

    [Theory]
    [InlineData(true, 0)]
    [InlineData(false, 1)]
    [InlineData(true, 2)]
    public void Shared_contents_overwritten_trimmed_written_back_and_recompressed_at_once_stay_whole(bool dedup, int seed)
    {
        const int blocks = 4;
        const int contents = 7;
        byte[][] pages = Enumerable.Range(0, contents).Select(Content).ToArray();
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = blocks * Page,
            Dedup = dedup,
            RecompressAlgorithm = "zstd:1",
            BackingFile = Path.Combine(_dir, "wb"),
            CompactInterval = TimeSpan.FromMilliseconds(2),
            CompactThresholdPages = 1,
        }, NullLoggerFactory.Instance);

        var last = new int[2, blocks];
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        var threads = new List<Thread>();
        for (int w = 0; w < 2; w++)
        {
            int me = w;
            threads.Add(new Thread(() =>
            {
                var random = new Random((seed * 7) + me);
                var buffer = new byte[Page];
                while (!stop.IsCancellationRequested && failures.IsEmpty)
                {
                    int block = random.Next(blocks);
                    int op = random.Next(5);
                    if (op <= 1)
                    {
                        int c = random.Next(contents);
                        NbdError e = device.Write((long)block * Page, pages[c], fua: false);
                        if (e != NbdError.None)
                        {
                            failures.Enqueue($"write {e}");
                        }

                        last[me, block] = c;
                    }
                    else if (op == 2)
                    {
                        if (device.Trim((long)block * Page, Page) != NbdError.None)
                        {
                            failures.Enqueue("trim failed");
                        }

                        last[me, block] = 0;
                    }
                    else
                    {
                        NbdError e = device.Read((long)block * Page, buffer);
                        if (e != NbdError.None || !pages.Any(p => p.AsSpan().SequenceEqual(buffer)))
                        {
                            failures.Enqueue($"block {block} read {e}, a page nobody wrote (first byte {buffer[0]})");
                        }
                    }
                }
            }));
        }

        threads.Add(new Thread(() =>
        {
            var random = new Random(seed + 99);
            while (!stop.IsCancellationRequested && failures.IsEmpty)
            {
                try
                {
                    switch (random.Next(5))
                    {
                        case 0:
                            device.Writeback((SlotSelection)random.Next(4));
                            break;
                        case 1:
                            device.Recompress((SlotSelection)random.Next(4));
                            break;
                        case 2:
                            device.MarkIdle();
                            break;
                        case 3:
                            device.Compact();
                            break;
                        default:
                            device.WritebackSlot(random.Next(blocks), SlotSelection.All, 0, tryLock: true, classIndex: -1, out _);
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
        for (int b = 0; b < blocks; b++)
        {
            Assert.Equal(NbdError.None, device.Read((long)b * Page, read));
            Assert.True(
                read.AsSpan().SequenceEqual(pages[last[0, b]]) || read.AsSpan().SequenceEqual(pages[last[1, b]]),
                $"block {b} holds neither writer's last content");
        }

        ReviewDeviceCounters.AssertMatchSlots(device);
    }
}
