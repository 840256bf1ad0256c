using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>
/// Partial trims that together cover a page whose stored content is already zero (a zero page written as data, or
/// WRITE_ZEROES with NO_HOLE): each leaves the page all zero, so the slot is emptied as a whole-slot trim empties
/// it and as partial trims of a page with data do, rather than staying a stored zero page in orig_data_size and
/// same_pages and an allocated extent.
/// </summary>
public class PartialTrimOfZeroPageTests
{
    private const int Page = ZramDevice.PageSize;

    private static ZramDevice Create()
        => new(new ZramDeviceOptions { Name = "zram0", DiskSize = 1L << 20, Algorithm = "lz4" }, NullLoggerFactory.Instance);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Partial_trims_of_a_stored_zero_page_empty_its_slot(bool writeZeroesNoHole)
    {
        using ZramDevice device = Create();
        Assert.Equal(NbdError.None, writeZeroesNoHole
            ? device.WriteZeroes(0, Page, noHole: true, fastZero: false)
            : device.Write(0, new byte[Page], fua: false));
        Assert.Equal(Page, device.GetStats().OrigDataSize);
        Assert.Equal(1, device.GetStats().SamePages);

        Assert.Equal(NbdError.None, device.Trim(0, 1024));
        Assert.Equal(NbdError.None, device.Trim(1024, 3072));

        device.FlushDeferredFrees();
        ZramStats stats = device.GetStats();
        Assert.True(stats.OrigDataSize == 0, $"orig_data_size {stats.OrigDataSize}: the trimmed zero page is still counted as stored");
        Assert.Equal(0, stats.SamePages);
        var extents = new BlockExtent[4];
        int count = device.GetExtents(0, Page, extents);
        Assert.True(count == 1 && extents[0] == new BlockExtent(Page, ExtentFlags.Hole | ExtentFlags.Zero),
            $"slot 0 is not a hole: {string.Join(", ", extents.Take(count))}");
    }
}
