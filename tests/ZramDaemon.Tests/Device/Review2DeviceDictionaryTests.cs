using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>Review 2: ZramDevice.DropUnusedDictionary (CompactCore) against the background recompressor's pass.</summary>
public sealed class Review2DeviceDictionaryTests
{
    private const int Page = ZramDevice.PageSize;

    /// <summary>
    /// FAILS on the current code. DropUnusedDictionary (src/ZramDaemon/Device/ZramDevice.cs) says "Only a recompression
    /// makes new users, under the recompression lock; one running now keeps it", but the background recompressor's pass
    /// is many slices (RecompressSlice), and the lock is released between them. PrepareDictionary trains the dictionary
    /// only at the pass's first slice (cursor 0), and that slice's time starts before the training, so it usually ends
    /// after the first slot it works on; when that slot does not get smaller (an incompressible page here, or one already
    /// small), no slot uses the dictionary yet, and the first compaction between slices (the background tick's, or the
    /// write path's at mem_limit) drops it. The rest of the pass then recompresses every page without the dictionary it
    /// has just trained (no new one until the next pass, which trains again). Before DropUnusedDictionary the pass kept
    /// it. Right: a dictionary trained for a pass in progress is not dropped until that pass ends (e.g. remember that a
    /// pass is running, or drop only at a pass's start/end under the lock).
    /// </summary>
    [Fact]
    public void A_compaction_between_slices_does_not_take_the_dictionary_from_the_pass_that_trained_it()
    {
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 8L << 20,
            Algorithm = "lz4",
            RecompressAlgorithm = "zstd:6",
            RecompressDictionarySize = 32 << 10,
            CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance);

        // Slot 0 does not compress (stored huge, and zstd makes it no smaller); the others are text.
        byte[] random = new byte[Page];
        new Random(7).NextBytes(random);
        Assert.Equal(NbdError.None, device.Write(0, random, fua: false));
        for (int i = 1; i < 1024; i++)
        {
            byte[] page = (byte[])DevicePages.TextPage(i).Clone();
            BitConverter.TryWriteBytes(page.AsSpan(100, 4), i);
            Assert.Equal(NbdError.None, device.Write((long)i * Page, page, fua: false));
        }

        device.MarkIdle();

        // The pass's first slice: trains the dictionary, then works on slot 0 only, which is not made smaller.
        int cursor = 0;
        Assert.False(device.RecompressSlice(ref cursor, SlotSelection.Idle, TimeSpan.Zero, out bool stoppedByLimit));
        Assert.False(stoppedByLimit);
        ZramStats first = device.GetStats();
        Assert.True(first.RecompressDictBytes > 0, "the first slice trained no dictionary");
        Assert.Equal(0, first.RecompressDictPages);

        // A compaction between two slices, as the background tick runs one when it is due.
        device.Compact();

        while (!device.RecompressSlice(ref cursor, SlotSelection.Idle, TimeSpan.FromSeconds(10), out stoppedByLimit) && !stoppedByLimit)
        {
        }

        ZramStats after = device.GetStats();
        Assert.True(after.RecompressedPages > 100, $"{after.RecompressedPages} pages recompressed");
        Assert.True(after.RecompressDictPages > 0,
            $"the pass trained a dictionary, yet recompressed all {after.RecompressedPages} pages without it (recompress_dict_pages 0, dictionary bytes {after.RecompressDictBytes}): the compaction between its slices dropped it");

        byte[] read = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(0, read));
        Assert.Equal(random, read);
    }
}
