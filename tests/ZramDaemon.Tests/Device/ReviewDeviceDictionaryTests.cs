using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>Review (session 32's three rounds): what the recompression dictionary holds once no slot uses it any more,
/// and against the background recompressor's pass, whose slices let go of the recompression lock.</summary>
public sealed class ReviewDeviceDictionaryTests
{
    private const int Page = ZramDevice.PageSize;

    private static ZramDevice Create() => new(new ZramDeviceOptions
    {
        Name = "zram0",
        DiskSize = 8L << 20,
        Algorithm = "lz4",
        RecompressAlgorithm = "zstd:6",
        RecompressDictionarySize = 32 << 10,
        CompactInterval = TimeSpan.FromHours(1),
    }, NullLoggerFactory.Instance);

    /// <summary>Slot 0 does not compress (stored huge, and zstd makes it no smaller: a pass's first slice works on it only);
    /// slots 1-1023 are text, each a little different. Returns slot 0's page.</summary>
    private static byte[] WriteRandomThenText(ZramDevice device)
    {
        byte[] random = new byte[Page];
        new Random(7).NextBytes(random);
        Assert.Equal(NbdError.None, device.Write(0, random, fua: false));
        for (int i = 1; i < 1024; i++)
        {
            byte[] page = (byte[])DevicePages.TextPage(i).Clone();
            BitConverter.TryWriteBytes(page.AsSpan(100, 4), i);
            Assert.Equal(NbdError.None, device.Write((long)i * Page, page, fua: false));
        }

        return random;
    }

    /// <summary>
    /// FAILS on the current code. docs/device.md: the dictionary is "kept while any slot uses it"; it counts in
    /// mem_used_total (as metadata) with its digested form, and a decoder per CPU holds native memory besides. But only
    /// Reset drops it (ZramDevice.Reset: "if (_dictionary is not null &amp;&amp; DictionaryPages == 0) DropDictionary()"), and a
    /// reset is refused while a client is attached. A client that discards the whole device (blkdiscard, mkfs, fstrim,
    /// swapon) leaves recompress_dict_pages at 0 and the dictionary in memory for the daemon's life; and since
    /// PrepareDictionary trains only when there is none, the next data is recompressed with a dictionary trained on
    /// pages that are gone. The same kind of leak as the dedup index's arrays after a whole-device discard, which
    /// CompactCore now gives back (DedupIndex.Shrink, DedupIndexAfterDiscardTests). Correct: once no slot uses
    /// it, a compaction (or the next recompression, under the recompression lock) drops it, and the next pass trains
    /// a new one on what the device holds then, as after a reset.
    /// </summary>
    [Fact]
    public void A_dictionary_no_slot_uses_after_a_whole_device_discard_is_given_back()
    {
        using ZramDevice device = Create();
        for (int i = 0; i < 1024; i++)
        {
            byte[] page = (byte[])DevicePages.TextPage(i).Clone();
            BitConverter.TryWriteBytes(page.AsSpan(100, 4), i);
            Assert.Equal(NbdError.None, device.Write((long)i * Page, page, fua: false));
        }

        device.MarkIdle();
        Assert.True(device.Recompress(SlotSelection.Idle).Recompressed > 0);
        Assert.True(device.GetStats().RecompressDictBytes > 0);

        Assert.Equal(NbdError.None, device.Trim(0, device.Size));
        device.Compact();
        ZramStats stats = device.GetStats();
        Assert.Equal(0, stats.RecompressDictPages);
        Assert.Equal(0, stats.RecompressDictBytes);
    }

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
        using ZramDevice device = Create();

        byte[] random = WriteRandomThenText(device);

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

    /// <summary>
    /// FAILS on the current code. DropUnusedDictionary (src/ZramDaemon/Device/ZramDevice.cs:776) now skips the drop while
    /// a background pass is open (_slicedPassOpen), but nothing takes the drop up again when that pass ends
    /// (RecompressSlice, ZramDevice.cs:1078-1079 only clears the flag). DropUnusedDictionary runs only inside CompactCore,
    /// and on a device a whole-device discard emptied the background tick never compacts again (CompactionDue: nothing
    /// to compact). So a discard (blkdiscard, mkfs, swapon) that lands while a pass is open leaves the dictionary, trained
    /// on data that is gone, in mem_used_total for good, and the next pass reuses it instead of training on what the
    /// device holds then (PrepareDictionary returns when one exists). Right: the drop that the open pass deferred
    /// happens when the pass ends (e.g. at the end of RecompressSlice, under the lock: drop when DictionaryPages is 0
    /// and a drop was deferred), so the device ends where a discard without a pass open leaves it.
    /// </summary>
    [Fact]
    public void A_dictionary_kept_for_an_open_pass_over_a_whole_device_discard_goes_when_the_pass_ends()
    {
        using ZramDevice device = Create();

        WriteRandomThenText(device);

        device.MarkIdle();

        // The pass's first slice trains the dictionary; the pass is open.
        int cursor = 0;
        Assert.False(device.RecompressSlice(ref cursor, SlotSelection.Idle, TimeSpan.Zero, out bool stoppedByLimit));
        Assert.False(stoppedByLimit);
        Assert.True(device.GetStats().RecompressDictBytes > 0, "the first slice trained no dictionary");

        // A discard of the whole device, and the compaction after it (the tick's; kept for the open pass, rightly).
        Assert.Equal(NbdError.None, device.Trim(0, device.Size));
        device.Compact();
        Assert.True(device.GetStats().RecompressDictBytes > 0, "dropped while the pass was open");

        // The pass runs to its end over the now empty device.
        while (!device.RecompressSlice(ref cursor, SlotSelection.Idle, TimeSpan.FromSeconds(10), out stoppedByLimit) && !stoppedByLimit)
        {
        }

        // What the daemon does from now on: background ticks.
        for (int i = 0; i < 5; i++)
        {
            device.BackgroundTick();
        }

        ZramStats after = device.GetStats();
        Assert.Equal(0, after.RecompressDictPages);
        Assert.True(after.RecompressDictBytes == 0,
            $"the whole device was discarded and the pass that kept the dictionary ended, yet the dictionary ({after.RecompressDictBytes} bytes, no slot using it) is still held: nothing drops it any more");
    }
}
