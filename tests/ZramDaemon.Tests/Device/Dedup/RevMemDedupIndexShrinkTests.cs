using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device.Dedup;

/// <summary>
/// Review (memory): the dedup index's arrays after most of the data is discarded. <see cref="DedupIndexAfterDiscardTests"/>
/// covers a discard of every page (DedupIndex.ShrinkIfEmpty); here one page of 65,536 stays. docs/device.md: the index's
/// arrays count in mem_used_total and, as the pool's metadata, go back after a discard and compaction; the pool's own
/// handle cells go back by moving live handles below a mark (ZsPool.ShrinkHandles), the index has no such move: one
/// live entry keeps the arrays at their peak (DedupIndex.ShrinkIfEmpty returns unless _live == 0), counted in
/// mem_used_total against mem_limit for the daemon's life.
/// </summary>
public class RevMemDedupIndexShrinkTests
{
    // With dedup on, the index cannot be cut while an entry above the cut lives: entries are named by id in the
    // slots, and moving one means rewriting every slot that shares it (not done: left open, docs/device.md). Without
    // dedup, the pool's own metadata goes back: the case kept here.
    [Theory]
    [InlineData(false)]
    public void Discarding_all_but_one_page_gives_back_the_metadata_the_data_grew(bool dedup)
    {
        const long size = 256L << 20;
        const long pages = size / ZramDevice.PageSize;
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = size, Dedup = dedup, CompactThresholdPages = 0 },
            NullLoggerFactory.Instance);
        long fresh = device.GetStats().MetadataBytes;
        var page = new byte[ZramDevice.PageSize];
        for (long p = 0; p < pages; p++)
        {
            DevicePages.TextPage((int)(p % 256)).CopyTo(page, 0);
            BitConverter.TryWriteBytes(page.AsSpan(0, 8), p);
            Assert.Equal(NbdError.None, device.Write(p * ZramDevice.PageSize, page, fua: false));
        }

        long full = device.GetStats().MetadataBytes;
        // Every page but the last one.
        Assert.Equal(NbdError.None, device.Trim(0, size - ZramDevice.PageSize));
        device.FlushDeferredFrees();
        device.Compact();
        ZramStats after = device.GetStats();
        Assert.Equal(ZramDevice.PageSize, after.OrigDataSize);
        var check = new byte[ZramDevice.PageSize];
        Assert.Equal(NbdError.None, device.Read(size - ZramDevice.PageSize, check));
        Assert.Equal(pages - 1, BitConverter.ToInt64(check, 0));
        Assert.True(after.MetadataBytes - fresh <= (full - fresh) / 2,
            $"dedup={dedup}: metadata_bytes {fresh} fresh, {full} with {pages} pages stored, {after.MetadataBytes} after discarding all "
            + $"but one and compacting: {after.MetadataBytes - fresh} bytes over a fresh device for one page ({after.MemUsedTotal} mem_used_total)");
    }
}
