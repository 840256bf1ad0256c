using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Tests.Daemon;
using ZramDaemon.Tests.Device;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (RevW): the backing file cut short under a running device (an admin's `truncate -s 0` or `: &gt; FILE` to
/// reclaim a large file, logrotate's copytruncate). zramd's flock is advisory: nothing stops it (the kernel claims its
/// backing block device exclusively, so no one else can write to it). A read of a block past the new end is short and
/// gets EIO, as it should. But the next writeback to a block further on extends the file again, and every block
/// before it is now a hole that reads as zeros without an error: a written-back huge page (stored raw, no
/// decompression to fail) then reads back as 4096 zero bytes and the read succeeds. Silently wrong data where EIO was
/// due a moment before; a live block is never a hole in zramd's own use (every one was written), so it can tell.
/// </summary>
public sealed class RevWTruncatedFileTests : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-revw-trunc-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// FAILS on the current code. 8 huge (random) and 8 compressible pages written back to blocks 0-15; the file
    /// truncated to 0; one more page written back (block 16, which extends the file over holes). Each of the 16 pages
    /// must read back as written or fail with EIO: their data is gone, and the client must be told. zramd returns the 8
    /// huge ones as zeros with success (the compressible ones fail to decompress: EIO). Fix in BackingFile.Read / the
    /// ReadBack path: refuse a hole (lseek SEEK_DATA at the block), or keep a checksum per block; or keep the file
    /// where no one can cut it (O_TMPFILE, unlinked once opened).
    /// </summary>
    [Fact]
    public void A_written_back_page_never_reads_back_as_zeros_after_the_file_was_cut_and_grew_again()
    {
        string path = Path.Combine(_dir, "zram0.wb");
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 1L << 20,
            BackingFile = path,
            CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance);
        var random = new Random(4);
        var model = new byte[16][];
        for (int i = 0; i < model.Length; i++)
        {
            model[i] = i < 8 ? new byte[Page] : DevicePages.TextPage(i);
            if (i < 8)
            {
                random.NextBytes(model[i]);
            }

            Assert.Equal(NbdError.None, device.Write((long)i * Page, model[i], fua: false));
        }

        Assert.Equal(16, device.Writeback(SlotSelection.All).WrittenBack);
        ClientTool.Run("truncate", ["-s", "0", path]).EnsureSuccess();

        var extra = new byte[Page];
        random.NextBytes(extra);
        Assert.Equal(NbdError.None, device.Write(100L * Page, extra, fua: false));
        Assert.Equal(1, device.Writeback(SlotSelection.All).WrittenBack);

        var back = new byte[Page];
        var wrong = new List<string>();
        for (int i = 0; i < model.Length; i++)
        {
            NbdError error = device.Read((long)i * Page, back);
            if (error == NbdError.None && !back.AsSpan().SequenceEqual(model[i]))
            {
                wrong.Add(string.Create(CultureInfo.InvariantCulture,
                    $"page {i}{(back.AsSpan().IndexOfAnyExcept((byte)0) < 0 ? " (all zeros)" : string.Empty)}"));
            }
        }

        Assert.True(wrong.Count == 0,
            $"{wrong.Count} written-back pages read back other bytes without an error after the file was cut and grew again: {string.Join(", ", wrong)}");
        Assert.Equal(NbdError.None, device.Read(100L * Page, back));
        Assert.True(back.AsSpan().SequenceEqual(extra), "the page written back after the cut reads back different");
    }
}
