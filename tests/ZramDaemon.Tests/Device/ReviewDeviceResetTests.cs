using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>
/// Review: reset while writers, background compaction, writeback and recompression run. Reset may leave pages the racing
/// writers stored (ZramDevice.Reset says so), but what it leaves must be consistent: every block readable, and the
/// counters, the pool's objects and words and the backing file's blocks what the slots hold.
/// </summary>
public sealed class ReviewDeviceResetTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-review-reset-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void Reset_racing_writes_and_maintenance_leaves_counters_matching_the_slots(bool dedup, bool limit)
    {
        const int blocks = 1024;
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = blocks * Page,
            Dedup = dedup,
            RecompressAlgorithm = "zstd:3",
            RecompressIdleAfter = TimeSpan.FromMilliseconds(20),
            RecompressCpuPercent = 100,
            BackingFile = Path.Combine(_dir, "wb"),
            CompactInterval = TimeSpan.FromMilliseconds(5),
            CompactThresholdPages = 1,
            WritebackWatermarkPercent = 20,
            CompactWatermarkPercent = 50,
            MemLimit = limit ? ZramDevice.MinimumMemLimitFor(blocks * Page, dedup) + (1 << 20) : 0,
        }, NullLoggerFactory.Instance);

        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        var threads = new List<Thread>();
        for (int w = 0; w < 2; w++)
        {
            int me = w;
            threads.Add(new Thread(() =>
            {
                var random = new Random(me);
                var buffer = new byte[2 * Page];
                while (!stop.IsCancellationRequested)
                {
                    long offset = random.Next(blocks * Page - (2 * Page));
                    if (random.Next(2) == 0)
                    {
                        offset &= ~(long)(Page - 1);
                    }

                    int length = random.Next(1, 2 * Page);
                    NbdError error = random.Next(8) switch
                    {
                        0 => device.Trim(offset, length),
                        1 => device.WriteZeroes(offset, length, noHole: random.Next(2) == 0, fastZero: false),
                        2 => device.Read(offset, buffer.AsSpan(0, length)),
                        _ => device.Write(offset, DevicePages.Mixed(random, length), fua: false),
                    };
                    if (error != NbdError.None && error != NbdError.NoSpace)
                    {
                        failures.Enqueue($"{error} at {offset}+{length}");
                    }
                }
            }));
        }

        threads.Add(new Thread(() =>
        {
            var random = new Random(9);
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    switch (random.Next(4))
                    {
                        case 0:
                            device.Reset();
                            break;
                        case 1:
                            device.Writeback(SlotSelection.All, maxPages: 32);
                            break;
                        case 2:
                            device.Recompress(SlotSelection.All, maxPages: 32);
                            break;
                        default:
                            device.MarkIdle();
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
        var page = new byte[Page];
        for (int i = 0; i < blocks; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, page));
        }

        ReviewDeviceCounters.AssertMatchSlots(device);
    }
}
