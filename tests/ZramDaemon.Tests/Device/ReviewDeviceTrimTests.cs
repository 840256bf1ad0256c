using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>Review: a TRIM over written-back pages whose backing file can no longer be read.</summary>
public sealed class ReviewDeviceTrimTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-review-trim-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// FAILS on the current code. A TRIM that starts inside a written-back page whose block cannot be read back (the
    /// backing file cut short here, as a failing disk under it would return EIO) fails with EIO at that first partial
    /// page, counts a failed write, and frees none of the whole pages after it: ZeroRange (ZramDevice.cs) stops at the
    /// ZeroPartial error, forgiving only NoSpace for a discard. A discard is a hint that must free what it can: the
    /// kernel's zram_bio_discard never reads (it skips a partial page at either end) and never fails, so the eight
    /// whole pages go (bd_count 8 -> 0) and io_stat's failed_writes stays 0; the same range without the partial head
    /// frees them here too. docs/device.md (TRIM) says the rest of the range is still trimmed when a partial slot's
    /// zeroed page does not fit under mem_limit, "since a trim is how a client makes room (it used to fail with ENOSPC
    /// and leave the whole slots after that one untouched)": an unreadable page still does exactly that. Correct: the unreadable partial page is left as it is (as a partial page at the memory
    /// limit already is) and the rest of the range is trimmed.
    /// </summary>
    [Fact]
    public void A_trim_starting_in_an_unreadable_written_back_page_still_frees_the_whole_pages_after_it()
    {
        string file = Path.Combine(_dir, "wb");
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 16 * Page,
            BackingFile = file,
            CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance);
        for (int i = 0; i < 9; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        Assert.Equal(9, device.Writeback(SlotSelection.All).WrittenBack);
        // Every block now reads short: ReadBack answers EIO. truncate(1): .NET's FileStream would wait on zramd's flock.
        using (var cut = System.Diagnostics.Process.Start("truncate", ["-s", "0", file])!)
        {
            cut.WaitForExit();
            Assert.Equal(0, cut.ExitCode);
        }

        var page = new byte[Page];
        Assert.Equal(NbdError.IO, device.Read(0, page)); // the page itself is lost, as it would be on a failed disk

        NbdError trim = device.Trim(512, (9 * Page) - 512);
        ZramStats stats = device.GetStats();
        Assert.Equal(NbdError.None, trim);
        Assert.Equal(1, stats.BdCount); // only the partial head's block stays
        Assert.Equal(0, stats.FailedWrites);
    }
}
