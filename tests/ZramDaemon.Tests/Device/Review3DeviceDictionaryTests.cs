using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>Review 3: ZramDevice._slicedPassOpen / DropUnusedDictionary against a discard of the whole device.</summary>
public sealed class Review3DeviceDictionaryTests
{
    private const int Page = ZramDevice.PageSize;

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
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 8L << 20,
            Algorithm = "lz4",
            RecompressAlgorithm = "zstd:6",
            RecompressDictionarySize = 32 << 10,
            CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance);

        // Slot 0 does not compress (the first slice works on it only, and makes it no smaller); the others are text.
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
