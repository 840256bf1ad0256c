using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Recompression;

namespace ZramDaemon.Tests.Device.Recompression;

/// <summary>The walks of a recompress run with max_pages (<see cref="SizeBuckets"/>): largest objects first, each walk
/// below the one before.</summary>
public sealed class LargestFirstWalkTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-largest-first-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// Under a threshold that refuses every result, a tried page is left unmarked (a later run tries it again, as the
    /// kernel's), so a walk that took the sizes of the one before would try it again and spend max_pages on it. 8 raw
    /// random pages and 8 of half random bytes (about 2 KiB with lz4), max_pages=12: the first walk takes the raw
    /// ones, the second four of the others; every page tried loses its idle mark, so the 4 left idle are the ones
    /// never tried.
    /// </summary>
    [Fact]
    public void A_run_with_max_pages_tries_each_page_once_when_a_threshold_refuses_every_result()
    {
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 1L << 20,
            RecompressAlgorithm = "zstd:3",
            BackingFile = Path.Combine(_dir, "zram0.wb"),
        }, NullLoggerFactory.Instance);
        var random = new Random(21);
        for (int i = 0; i < 16; i++)
        {
            var page = new byte[Page];
            random.NextBytes(page.AsSpan(0, i < 8 ? Page : Page / 2));
            Assert.Equal(NbdError.None, device.Write((long)i * Page, page, fua: false));
        }

        Assert.Equal(8, device.GetStats().HugePages);
        Assert.Equal(16, device.MarkIdle());

        RecompressionResult run = device.Recompress(SlotSelection.All, maxPages: 12, threshold: 1000);

        Assert.Equal((12L, 0L), (run.Candidates, run.Recompressed));
        Assert.Equal(4, device.Writeback(SlotSelection.Idle).WrittenBack);
    }
}
