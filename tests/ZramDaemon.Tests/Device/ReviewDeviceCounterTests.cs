using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>Review: io_stat / mm_stat counters against what the kernel's zram counts for the same requests.</summary>
public sealed class ReviewDeviceCounterTests
{
    private const int Page = ZramDevice.PageSize;

    private static ZramDevice Create() => new(new ZramDeviceOptions
    {
        Name = "zram0",
        DiskSize = 64 * Page,
        CompactInterval = TimeSpan.FromHours(1),
    }, NullLoggerFactory.Instance);

    /// <summary>
    /// FAILS on the current code. The kernel's zram_submit_bio sends REQ_OP_WRITE_ZEROES to zram_bio_discard, as it
    /// does REQ_OP_DISCARD, and that frees every whole page of the range and increments notify_free once per page
    /// (io_stat's fourth field). zramd counts notify_free only for TRIM: ZeroRange passes discard: false for
    /// WRITE_ZEROES, and ZeroSlots (ZramDevice.cs, "if (discard) Interlocked.Add(ref _counters.NotifyFree, count)")
    /// leaves it out, although the slots are emptied just the same (DiscardedPages counts them). An NBD client's
    /// kernel turns blkdiscard -z / fallocate ZERO_RANGE into NBD_CMD_WRITE_ZEROES, so io_stat reads 0 where a
    /// kernel zram device reads 4. docs/device.md says "WRITE_ZEROES: as TRIM".
    /// </summary>
    [Fact]
    public void Write_zeroes_of_whole_pages_counts_notify_free_as_the_kernel_does()
    {
        using ZramDevice device = Create();
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        Assert.Equal(NbdError.None, device.WriteZeroes(0, 4 * Page, noHole: false, fastZero: false));
        ZramStats stats = device.GetStats();
        Assert.Equal(0, stats.OrigDataSize); // the slots were emptied, as the kernel's zram_free_page does
        Assert.Equal(4, stats.NotifyFree);
    }
}
