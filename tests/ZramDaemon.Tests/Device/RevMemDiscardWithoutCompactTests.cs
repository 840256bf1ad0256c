using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using Xunit.Abstractions;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>
/// Review (memory): what a discard of the whole device gives back by itself, with the background thread running as in
/// the daemon (default options: a tick every second) and nobody running <c>zramd compact</c>. The kernel's zram frees
/// each slot's zsmalloc object and handle as the discard reaches it (zram_bio_discard, zs_free: the pages go back once
/// their zspage is empty, the handle to its slab cache), so mm_stat's mem_used_total is back where it started. Here the
/// pool pages go (every zspage empties), but the handle cells, the zspage descriptors and the dedup index's arrays go
/// back only in a compaction (ZramDevice.CompactCore: DedupIndex.Shrink, ZsPool.ShrinkHandles, ShrinkZspages); the
/// background thread compacts only when CompactionDue finds CanCompact() > 0 past the watermark or >= 1024 pages, and
/// after everything is freed there is nothing to compact (CanCompact() == 0): those stay counted in mem_used_total and
/// resident, for as long as the daemon runs idle.
/// </summary>
public sealed class RevMemDiscardWithoutCompactTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_whole_device_discard_gives_back_the_metadata_the_data_grew_without_a_manual_compaction(bool dedup)
    {
        const long size = 1L << 30;
        const long pages = size / ZramDevice.PageSize;
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = size, Dedup = dedup }, NullLoggerFactory.Instance);
        long fresh = device.GetStats().MemUsedTotal;
        var page = new byte[ZramDevice.PageSize];
        for (long p = 0; p < pages; p++)
        {
            DevicePages.TextPage((int)(p % 256)).CopyTo(page, 0);
            BitConverter.TryWriteBytes(page.AsSpan(0, 8), p);
            Assert.Equal(NbdError.None, device.Write(p * ZramDevice.PageSize, page, fua: false));
        }

        ZramStats full = device.GetStats();
        Assert.Equal(NbdError.None, device.Trim(0, size));

        // Background ticks (1 s each): the deferred frees are drained, warm pages and empty arenas released; three on a
        // quiet machine, up to 60 s on a loaded one.
        for (var clock = System.Diagnostics.Stopwatch.StartNew(); device.GetStats().MemUsedTotal - fresh > (full.MetadataBytes - fresh) / 4 && clock.Elapsed < TimeSpan.FromSeconds(60);)
        {
            Thread.Sleep(100); // not a spin: the stats take every size class's lock, which the awaited tick needs too
        }

        ZramStats after = device.GetStats();
        Assert.Equal(0, after.OrigDataSize);
        long poolPages = device.GetPoolStats().PagesUsed;
        output.WriteLine($"dedup={dedup}: mem_used_total fresh {fresh}, full {full.MemUsedTotal} (metadata {full.MetadataBytes}), "
            + $"after discard and idle ticks {after.MemUsedTotal} (metadata {after.MetadataBytes}, pool pages {poolPages}, compactions {after.CompactionRuns})");
        Assert.True(after.MemUsedTotal - fresh <= (full.MetadataBytes - fresh) / 4,
            $"dedup={dedup}: a discard of the whole device and 60 s idle left mem_used_total at {after.MemUsedTotal} bytes, "
            + $"{after.MemUsedTotal - fresh} over the fresh device's {fresh} ({poolPages} pool pages; the metadata grew from {fresh} to "
            + $"{full.MetadataBytes} with the data and is {after.MetadataBytes} now; {after.CompactionRuns} compactions ran)");
    }
}
