using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Writeback;
using ZramDaemon.Tests.Daemon;
using ZramDaemon.Tests.Device;
using ZramDaemon.Tests.Device.Writeback;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (RevW): a write to the backing file refused with EPERM (here: the file made immutable, `chattr +i`, on ext4,
/// whose write path checks it on an open descriptor; EACCES and EBADF map the same way). .NET throws
/// UnauthorizedAccessException for EPERM/EACCES/EBADF (and ArgumentOutOfRangeException for EFBIG), not IOException,
/// and <c>ZramDevice.WritebackLocked</c> catches IOException only: the exception leaves it between
/// <see cref="BackingFile.Allocate"/> and the write's cleanup, so the block taken stays marked in use (bd_count counts
/// it, nothing is in it, no slot names it) and the page taken from the daily limit stays spent, each time. The file
/// has one block per slot ("so the file never fills before the device does"), so once a slot's worth of attempts
/// failed the bitmap is full of blocks nobody holds: writeback reports the file full, for as long as the daemon lives
/// (a reset frees only blocks that slots name). The kernel (writeback_store) frees the block and goes on whatever
/// the bio's error, and charges writeback_limit only for a write that succeeded.
/// </summary>
public sealed class RevWWriteRefusedTests
{
    private const int Page = ZramDevice.PageSize;

    private static void Chattr(string flag, string path) => ClientTool.Run("chattr", [flag, path]).EnsureSuccess();

    /// <summary>
    /// FAILS on the current code. A 16-page device with 8 pages stored; its backing file is made immutable and the
    /// writeback verb run 16 times (each is refused at its first write; the kernel's would go on, which is being
    /// changed elsewhere and does not matter here: one failed write per run is enough); then the file is made writable
    /// again. Nothing was written, so bd_count and writeback_today must be 0 and a writeback must then move the 8
    /// pages. zramd: each run threw UnauthorizedAccessException (the control verb answers "writeback failed: Access to
    /// the path ... is denied"), bd_count is 16 with no page in the file, writeback_today 64 KiB, and the writeback
    /// after it writes 0 pages: "the backing file is full".
    /// </summary>
    [Fact]
    public void A_refused_backing_write_frees_its_block_and_spends_no_budget()
    {
        using var ext4 = new RevWExt4Mount(tmpfsMiB: 24, imageMiB: 16);
        string path = Path.Combine(ext4.Path, "zram0.wb");
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 16 * Page,
            BackingFile = path,
            CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance);
        for (int i = 0; i < 8; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, DevicePages.TextPage(i), fua: false));
        }

        var thrown = new List<string>();
        WritebackResult after;
        ZramStats stats;
        Chattr("+i", path);
        try
        {
            for (int run = 0; run < 16; run++)
            {
                try
                {
                    device.Writeback(SlotSelection.All);
                }
                catch (Exception e)
                {
                    thrown.Add(e.GetType().Name + ": " + e.Message);
                }
            }
        }
        finally
        {
            Chattr("-i", path);
        }

        stats = device.GetStats();
        after = device.Writeback(SlotSelection.All);

        Assert.True(stats.BdCount == 0 && stats.WritebackToday == 0 && after.WrittenBack == 8,
            $"after 16 refused writes: bd_count {stats.BdCount} (blocks holding nothing), bd_writes {stats.BdWrites}, writeback_today {stats.WritebackToday}; " +
            $"the next writeback wrote {after.WrittenBack} of 8 pages (stopped by {after.StoppedBy}); " +
            $"{thrown.Count} runs threw: {thrown.FirstOrDefault()}");
        var back = new byte[Page];
        for (int i = 0; i < 8; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(DevicePages.TextPage(i)), $"page {i} reads back different");
        }
    }

    /// <summary>
    /// FAILS on the current code. At the memory limit the write path makes room by writing back (docs/device.md: only
    /// when nothing more can go to the file does a write get ENOSPC). With the backing file refusing writes (EPERM), a
    /// write at the limit must get ENOSPC and change nothing; once the file takes writes again, writes at the limit
    /// must succeed again. zramd: the write throws UnauthorizedAccessException out of <see cref="ZramDevice.Write"/>
    /// (the NBD session answers EIO, "an exception is a bug"), each leaking a backing block; after as many refused
    /// writes as the file had free blocks, the file is full of blocks nobody holds and every later write at the limit
    /// fails with ENOSPC although the file holds fewer live pages than the device has slots.
    /// </summary>
    [Fact]
    public void At_the_limit_a_refused_backing_write_gives_ENOSPC_and_leaves_the_file_usable()
    {
        using var ext4 = new RevWExt4Mount(tmpfsMiB: 24, imageMiB: 16);
        string path = Path.Combine(ext4.Path, "zram0.wb");
        const int slots = 256;
        using ZramDevice device = QuietBackedDevice.Create(ext4.Path, "zram0", diskSize: slots * Page, memLimit: 0);
        device.SetMemLimit(device.MinimumMemLimit + (64 * Page));
        var model = new byte[slots][];
        var random = new Random(3);
        for (int i = 0; i < slots; i++)
        {
            model[i] = new byte[Page];
            random.NextBytes(model[i]); // huge: one page each, so the limit is reached after about 64
        }

        for (int i = 0; i < 128; i++)
        {
            Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
        }

        var refused = new Dictionary<string, int>();
        var unchanged = new List<int>();
        Chattr("+i", path);
        try
        {
            // Over the first 128 pages again, with other bytes: at the limit each needs a writeback.
            for (int i = 0; i < 128; i++)
            {
                var other = new byte[Page];
                random.NextBytes(other);
                string outcome;
                try
                {
                    NbdError error = device.Write((long)i * Page, other, fua: false);
                    outcome = error.ToString();
                    if (error == NbdError.None)
                    {
                        model[i] = other;
                    }
                }
                catch (Exception e)
                {
                    outcome = e.GetType().Name;
                }

                refused[outcome] = refused.GetValueOrDefault(outcome) + 1;
            }
        }
        finally
        {
            Chattr("-i", path);
        }

        ZramStats stats = device.GetStats();
        var failedAfter = new List<int>();
        for (int i = 128; i < slots; i++)
        {
            if (device.Write((long)i * Page, model[i], fua: false) != NbdError.None)
            {
                failedAfter.Add(i);
                model[i] = new byte[Page]; // never written: reads as zeros
            }
        }

        string outcomes = string.Join(", ", refused.Select(kv => $"{kv.Value} x {kv.Key}"));
        Assert.True(!refused.Keys.Except([nameof(NbdError.NoSpace), nameof(NbdError.None)]).Any() && failedAfter.Count == 0,
            $"writes at the limit while the file refused writes: {outcomes}; then bd_count was {stats.BdCount} with " +
            $"{stats.OrigDataSize / Page} pages stored, and {failedAfter.Count} of 128 writes at the limit to a writable file failed");
        var back = new byte[Page];
        for (int i = 0; i < slots; i++)
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.True(back.AsSpan().SequenceEqual(model[i]), $"page {i} reads back different");
        }
    }
}
