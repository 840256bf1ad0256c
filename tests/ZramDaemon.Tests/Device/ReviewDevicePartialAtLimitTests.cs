using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>Review: a partial write at the memory limit with a backing file.</summary>
public sealed class ReviewDevicePartialAtLimitTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-review-partial-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// FAILS on the current code. With a backing file a write at the limit writes other pages back rather than fail
    /// (the header of ZramDevice: "a swap user gets slower reads, not ENOSPC"), and a whole-page write into the only
    /// stored page does so: WritebackForRoom takes that page's own slot, unlocked while the new page is compressed, and
    /// its pool page makes room. A partial write (any write not covering the whole 4 KiB, which zramd accepts at any
    /// alignment) into the same page fails with ENOSPC: WritePartial holds the slot lock for the read-modify-write,
    /// so WritebackForRoom's TryLock passes over the one slot that could give room (ZramDevice.WritePartial ->
    /// StorePage(lockHeld: true) -> Allocate -> AllocateAfterCompaction/FreePagesByWriteback), and nothing else is a
    /// candidate. Here the device is at its minimum mem_limit (MinimumMemLimit: "at this one a page fits"); the same
    /// happens at any limit whenever the pages that could go to the file are the partially written one and slots that
    /// cannot (shared dedup entries, same-filled pages). Correct: as the whole-page write, the write succeeds (e.g. the
    /// writer, which holds the lock, writes its own slot's old object back, or frees it once the new page is built).
    /// </summary>
    [Fact]
    public void A_partial_write_into_the_only_stored_page_at_the_limit_succeeds_as_a_whole_page_write_does()
    {
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 16 * Page,
            MemLimit = ZramDevice.MinimumMemLimitFor(16 * Page, dedup: false),
            BackingFile = Path.Combine(_dir, "wb"),
            WritebackWatermarkPercent = 100,
            CompactWatermarkPercent = 100,
            CompactThresholdPages = 0,
            CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance);
        var random = new Random(1);
        var page = new byte[Page];
        random.NextBytes(page);
        Assert.Equal(NbdError.None, device.Write(0, page, fua: false));

        var whole = new byte[Page];
        random.NextBytes(whole);
        Assert.Equal(NbdError.None, device.Write(0, whole, fua: false)); // the old page goes to the file first

        var part = new byte[512];
        random.NextBytes(part);
        NbdError error = device.Write(1024, part, fua: false);
        part.CopyTo(whole, 1024);
        Assert.Equal(NbdError.None, error);
        var read = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(0, read));
        Assert.True(read.AsSpan().SequenceEqual(whole));
    }
}
