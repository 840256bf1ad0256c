using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device.Dedup;

/// <summary>
/// Review (memory): the dedup index's arrays after most of the data is discarded. <see cref="DedupIndexAfterDiscardTests"/>
/// covers a discard of every page; here one page of 65,536 stays, the last written, whose entry has the highest id.
/// Until 7 December one live entry kept the arrays at their peak (DedupIndex.ShrinkIfEmpty returned unless no entry
/// was live), counted in mem_used_total against mem_limit for the daemon's life: metadata_bytes 565,248 fresh,
/// 2,764,740 full, 2,187,268 after the discard and compaction. Now the pages of entries that hold only free ids go
/// back (DedupIndex.Shrink; DedupIndexShrinkTests has the index's side): 622,596 after (dedup off, the control:
/// 540,672, 1,191,876 and 614,404).
/// </summary>
public class RevMemDedupIndexShrinkTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
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
