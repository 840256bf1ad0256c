using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Writeback;
using ZramDaemon.Tests.Device;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (RevW): a write to the backing file that the filesystem accepts into the page cache and fails when it
/// writes the page out. zramd writes a slot's object with a buffered pwrite and frees its pool object as soon as the
/// pwrite returns; the error comes later, from the sync_file_range of <see cref="BackingFile.DropCached"/>, which
/// ignores it ("nothing is lost either way"), and the posix_fadvise(DONTNEED) after it drops the page, now clean but
/// never written. The slot then reads whatever the disk holds there: zeros. The kernel's zram writes back with
/// submit_bio_wait and, on an error, keeps the slot in memory (writeback_store: "BIO errors are not fatal ... release_pp_slot"),
/// so a failed backing write never costs a page.
/// </summary>
public sealed class RevWLateWriteErrorTests
{
    private const int Page = ZramDevice.PageSize;

    /// <summary>
    /// FAILS on the current code. ext4 (48 MiB, on a loop device whose sparse image sits on a 3 MiB tmpfs) takes the
    /// 2048 written-back pages into its page cache; writing them out fails past the tmpfs's ~2.6 MiB (the kernel logs
    /// "I/O error ... writing to inode"). Every pwrite returned success, so zramd freed every object: after the run,
    /// the huge (random) pages that did not reach the disk read back as 4096 zero bytes with no error (silently wrong
    /// data), and the compressible ones fail to decompress (EIO: pages the client wrote, lost). Each page must read back
    /// as written: a backing write whose error shows only at the flush must not have freed the page in memory (write
    /// with RWF_DSYNC / O_DIRECT so that the error comes back from the write, or keep the objects until the flush
    /// succeeded), as the kernel keeps a slot whose bio failed.
    /// </summary>
    [Fact]
    public void Pages_whose_backing_write_fails_at_the_flush_still_read_back_as_written()
    {
        using var ext4 = new RevWExt4Mount(tmpfsMiB: 3, imageMiB: 48);
        const int pages = 2048;
        var model = new byte[pages][];
        var random = new Random(7);
        using (var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = (long)pages * Page,
            BackingFile = Path.Combine(ext4.Path, "zram0.wb"),
            CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance))
        {
            for (int i = 0; i < pages; i++)
            {
                // Every other page huge (random bytes, stored raw), the others text (about 1-2 KiB compressed).
                model[i] = i % 2 == 0 ? new byte[Page] : DevicePages.TextPage(i);
                if (i % 2 == 0)
                {
                    random.NextBytes(model[i]);
                }

                Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
            }

            WritebackResult result = device.Writeback(SlotSelection.All);

            (int zeroed, int failed, int wrong) = ReadBack(device, model);

            ZramStats stats = device.GetStats();
            Assert.True(zeroed + failed + wrong == 0,
                $"of {pages} pages written, {result.WrittenBack} written back (bd_writes {stats.BdWrites}, stopped by {result.StoppedBy}): " +
                $"{zeroed} read back as zeros without an error, {failed} failed with {NbdError.IO}, {wrong} read back other bytes");
        }
    }

    /// <summary>Reads every page of <paramref name="model"/> back: how many read as zeros without an error, failed, or
    /// read other bytes.</summary>
    internal static (int Zeroed, int Failed, int Wrong) ReadBack(ZramDevice device, byte[][] model) => ReadBack(device, model, out _, out _);

    /// <summary><see cref="ReadBack(ZramDevice, byte[][])"/>, with the lowest and highest page that did not read back
    /// as written (-1 when all did).</summary>
    internal static (int Zeroed, int Failed, int Wrong) ReadBack(ZramDevice device, byte[][] model, out int firstBad, out int lastBad)
    {
        int zeroed = 0, failed = 0, wrong = 0;
        firstBad = lastBad = -1;
        var back = new byte[Page];
        for (int i = 0; i < model.Length; i++)
        {
            NbdError error = device.Read((long)i * Page, back);
            if (error != NbdError.None || !back.AsSpan().SequenceEqual(model[i]))
            {
                firstBad = firstBad < 0 ? i : firstBad;
                lastBad = i;
            }

            if (error != NbdError.None)
            {
                failed++;
            }
            else if (!back.AsSpan().SequenceEqual(model[i]))
            {
                if (back.AsSpan().IndexOfAnyExcept((byte)0) < 0)
                {
                    zeroed++;
                }
                else
                {
                    wrong++;
                }
            }
        }

        return (zeroed, failed, wrong);
    }
}
