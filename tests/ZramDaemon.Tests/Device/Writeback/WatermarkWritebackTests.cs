using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>The background writeback at the watermark writes back what takes usage ten points below it, not more.</summary>
public sealed class WatermarkWritebackTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-wbmark-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// 1024 distinct text pages, usage at 90% of the limit (watermark 80%): the pass should write back about a quarter of
    /// the data. With dedup every slot is a dedup reference whose own info has size 0, so the pass counted nothing freed
    /// and went on until it had written back every page it could (ZramDevice.WritebackToWatermark's
    /// <c>SlotInfo.Size(_slots.PeekInfo(index))</c>).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_watermark_pass_writes_back_about_what_it_needs_with_or_without_dedup(bool dedup)
    {
        const int pages = 1024;
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 2L * pages * Page,
            BackingFile = Path.Combine(_dir, "zram0.wb"),
            Dedup = dedup,
            WritebackWatermarkPercent = 80,
            CompactWatermarkPercent = 100,
            CompactThresholdPages = 0,
            CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance);
        for (int i = 0; i < pages; i++)
        {
            byte[] page = (byte[])DevicePages.TextPage(i).Clone();
            BitConverter.GetBytes(i).CopyTo(page, 0); // every page distinct: every dedup entry has one slot
            Assert.Equal(NbdError.None, device.Write((long)i * Page, page, fua: false));
        }

        long used = device.MemUsedTotal;
        device.SetMemLimit(used * 100 / 90); // kicks the background thread, whose pass is the only one (a second
                                             // pass run here at the same time would write back twice as much)

        // Until the pass is over: written-back pages counted, and no more for 3 s (half a second could end inside a pass
        // whose thread a loaded machine had descheduled).
        long written = 0;
        var quiet = System.Diagnostics.Stopwatch.StartNew();
        var limit = System.Diagnostics.Stopwatch.StartNew();
        while ((written == 0 || quiet.ElapsedMilliseconds < 3000) && limit.Elapsed < TimeSpan.FromSeconds(60))
        {
            Thread.Sleep(20);
            long now = device.GetStats().BdCount;
            if (now != written)
            {
                written = now;
                quiet.Restart();
            }
        }

        // Target: usage from 90% to 70% of the limit, a good fifth of it: far fewer than half the pages.
        Assert.True(written > pages / 8 && written < pages / 2, $"the watermark pass wrote back {written} of {pages} pages (dedup {dedup})");
    }
}
