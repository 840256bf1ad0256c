using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>Review: what the recompression dictionary holds once no slot uses it any more.</summary>
public sealed class ReviewDeviceDictionaryTests
{
    private const int Page = ZramDevice.PageSize;

    /// <summary>
    /// FAILS on the current code. docs/device.md: the dictionary is "kept while any slot uses it"; it counts in
    /// mem_used_total (as metadata) with its digested form, and a decoder per CPU holds native memory besides. But only
    /// Reset drops it (ZramDevice.Reset: "if (_dictionary is not null &amp;&amp; DictionaryPages == 0) DropDictionary()"), and a
    /// reset is refused while a client is attached. A client that discards the whole device (blkdiscard, mkfs, fstrim,
    /// swapon) leaves recompress_dict_pages at 0 and the dictionary in memory for the daemon's life; and since
    /// PrepareDictionary trains only when there is none, the next data is recompressed with a dictionary trained on
    /// pages that are gone. The same kind of leak as the dedup index's arrays after a whole-device discard, which
    /// CompactCore now gives back (DedupIndex.ShrinkIfEmpty, DedupIndexAfterDiscardTests). Correct: once no slot uses
    /// it, a compaction (or the next recompression, under the recompression lock) drops it, and the next pass trains
    /// a new one on what the device holds then, as after a reset.
    /// </summary>
    [Fact]
    public void A_dictionary_no_slot_uses_after_a_whole_device_discard_is_given_back()
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
}
