using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>
/// Eight writers at once at a tight limit with a backing file: each write that does not fit writes others back,
/// while the other writers hold the locks of the slots it would take (it only tries them). Every write must still
/// succeed. With zstd and dedup the old lock order deadlocked here (the test hung); with dedup and no writeback of
/// deduplicated slots, the writes failed with ENOSPC.
/// </summary>
public sealed class WritebackContentionTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-wbc-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(false, "lz4")]
    [InlineData(true, "zstd:1")]
    public void Many_writers_at_the_limit_never_get_ENOSPC_with_a_backing_file(bool dedup, string algorithm)
    {
        const long size = 64L << 20;
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = size,
            MemLimit = 2L << 20,
            Algorithm = algorithm,
            Dedup = dedup,
            BackingFile = Path.Combine(_dir, "zram0.wb"),
            CompactInterval = TimeSpan.FromMilliseconds(50),
        }, NullLoggerFactory.Instance);
        int failed = 0;
        var threads = Enumerable.Range(0, 8).Select(t => new Thread(() =>
        {
            var random = new Random(t);
            for (int op = 0; op < 4000; op++)
            {
                byte[] page = DevicePages.Mixed(random, Page);
                long offset = random.NextInt64(size / Page) * Page;
                if (device.Write(offset, page, fua: false) != NbdError.None)
                {
                    Interlocked.Increment(ref failed);
                }
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Equal(0, failed);
    }
}
