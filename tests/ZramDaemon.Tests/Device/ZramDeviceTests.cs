using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>The device's single behaviours: slot kinds, ranges, read-only, extents, algorithms, stats format, reset.</summary>
public class ZramDeviceTests
{
    private const int Page = ZramDevice.PageSize;

    private static ZramDevice Create(long size = 4L << 20, string algorithm = "lz4", bool readOnly = false)
        => new(new ZramDeviceOptions { Name = "zram0", DiskSize = size, Algorithm = algorithm, ReadOnly = readOnly }, NullLoggerFactory.Instance);

    [Fact]
    public void Unwritten_blocks_read_as_zeros_and_cost_no_pool_memory()
    {
        using ZramDevice device = Create();
        var buffer = new byte[3 * Page + 512];
        buffer.AsSpan().Fill(0xaa);
        Assert.Equal(NbdError.None, device.Read(Page - 512, buffer));
        Assert.True(buffer.AsSpan().IndexOfAnyExcept((byte)0) < 0);
        ZramStats stats = device.GetStats();
        Assert.Equal(0, stats.OrigDataSize);
        Assert.Equal(stats.MetadataBytes, stats.MemUsedTotal);
        Assert.True(stats.MetadataBytes >= (4L << 20) / Page * 8, "the 8-byte slot table is part of the metadata");
    }

    /// <summary>
    /// A same-filled value whose two 32-bit halves are equal (all ones, a repeated int) is kept in the slot, as the
    /// kernel keeps every value in its slot: no pool word. It reads back, is data to block status, survives a partial
    /// write and handle compaction, and a value differing in one half still takes a word.
    /// </summary>
    [Theory]
    [InlineData(0xFFFF_FFFF_FFFF_FFFFUL)]
    [InlineData(0x0000_0001_0000_0001UL)]
    [InlineData(0x8000_0000_8000_0000UL)]
    [InlineData(0x5A5A_5A5A_5A5A_5A5AUL)]
    public void A_same_filled_value_whose_halves_are_equal_is_kept_in_the_slot(ulong value)
    {
        using ZramDevice device = Create();
        byte[] pattern = DevicePages.SameFilled(value);
        Assert.Equal(NbdError.None, device.Write(Page, pattern, fua: false));
        Assert.Equal(NbdError.None, device.Write(2 * Page, DevicePages.SameFilled(value ^ (1UL << 32)), fua: false));
        ZramStats stats = device.GetStats();
        Assert.Equal(2, stats.SamePages);
        Assert.Equal(1, device.GetPoolStats().Words); // the second page's only
        Assert.Equal(0, device.GetPoolStats().Objects);
        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(Page, back));
        Assert.Equal(pattern, back);
        Assert.Equal(NbdError.None, device.Read(2 * Page, back));
        Assert.Equal(DevicePages.SameFilled(value ^ (1UL << 32)), back);
        var extents = new BlockExtent[4];
        Assert.Equal(2, device.GetExtents(0, 2 * Page, extents));
        Assert.Equal(new BlockExtent(Page, ExtentFlags.Allocated), extents[1]);

        device.Compact(); // moves pool words' handles; the value in the slot is no handle
        Assert.Equal(NbdError.None, device.Read(Page, back));
        Assert.Equal(pattern, back);

        // A partial write reads the value from the slot, then the page is compressed.
        var part = new byte[512];
        part.AsSpan().Fill(0x33);
        Assert.Equal(NbdError.None, device.Write(Page + 1024, part, fua: false));
        part.CopyTo(pattern, 1024);
        Assert.Equal(NbdError.None, device.Read(Page, back));
        Assert.Equal(pattern, back);
        Assert.Equal(1, device.GetStats().SamePages);
        Assert.Equal(1, device.GetPoolStats().Words);

        Assert.Equal(NbdError.None, device.Write(3 * Page, DevicePages.SameFilled(value), fua: false));
        Assert.Equal(NbdError.None, device.Trim(0, 4 * Page));
        Assert.Equal(0, device.GetStats().SamePages);
        Assert.Equal(0, device.GetPoolStats().Words);
    }

    [Fact]
    public void Same_filled_pages_are_stored_without_allocating_a_pool_object()
    {
        using ZramDevice device = Create();
        var pattern = new byte[Page];
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(pattern.AsSpan()).Fill(0x0123456789abcdefUL);
        Assert.Equal(NbdError.None, device.Write(0, pattern, fua: true));
        Assert.Equal(NbdError.None, device.Write(Page, new byte[Page], fua: false));
        ZramStats stats = device.GetStats();
        Assert.Equal(2, stats.SamePages);
        Assert.Equal(2 * Page, stats.OrigDataSize);
        Assert.Equal(0, stats.ComprDataSize);
        Assert.Equal(stats.MetadataBytes, stats.MemUsedTotal);
        // The non-zero value lives in a pool word (a handle cell, no object); the zero page needs nothing.
        Assert.Equal(1, device.GetPoolStats().Words);
        Assert.Equal(0, device.GetPoolStats().Objects);
        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.Equal(pattern, back);
        Assert.Equal(NbdError.None, device.Read(Page, back));
        Assert.True(back.AsSpan().IndexOfAnyExcept((byte)0) < 0);

        // Every way out of a same-filled page gives its word back: overwrite with another value, trim, zeroes.
        for (int i = 2; i < 6; i++)
        {
            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(pattern.AsSpan()).Fill(0xfeedface00000000UL + (ulong)i);
            Assert.Equal(NbdError.None, device.Write((long)i * Page, pattern, fua: false));
        }

        Assert.Equal(5, device.GetPoolStats().Words);
        Assert.Equal(NbdError.None, device.Write(2 * Page, pattern, fua: false));
        Assert.Equal(NbdError.None, device.Trim(3 * Page, Page));
        Assert.Equal(NbdError.None, device.WriteZeroes(4 * Page, Page, noHole: true, fastZero: false));
        Assert.Equal(NbdError.None, device.Write(5 * Page, DevicePages.TextPage(5), fua: false));
        Assert.Equal(2, device.GetPoolStats().Words);
        Assert.Equal(NbdError.None, device.Read(2 * Page, back));
        Assert.Equal(pattern, back);
        Assert.Equal(NbdError.None, device.Read(0, back));
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(pattern.AsSpan()).Fill(0x0123456789abcdefUL);
        Assert.Equal(pattern, back);
        Assert.Equal(NbdError.None, device.Trim(2 * Page, 4 * Page));

        // Half a page of another value breaks the pattern: it is compressed and stored in the pool.
        back.AsSpan(0, 2048).Fill(7);
        Assert.Equal(NbdError.None, device.Write(0, back.AsSpan(0, 2048), fua: false));
        stats = device.GetStats();
        Assert.Equal(1, stats.SamePages);
        Assert.True(stats.ComprDataSize > 0);
        Assert.True(stats.MemUsedTotal > stats.MetadataBytes);
        var again = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(0, again));
        Assert.Equal(back, again);
    }

    [Fact]
    public void Incompressible_pages_are_stored_raw_and_counted_as_huge()
    {
        using ZramDevice device = Create();
        var random = new byte[2 * Page];
        new Random(9).NextBytes(random);
        Assert.Equal(NbdError.None, device.Write(0, random, fua: false));
        Assert.Equal(NbdError.None, device.Trim(0, Page));
        ZramStats stats = device.GetStats();
        Assert.Equal(1, stats.HugePages);
        Assert.Equal(2, stats.HugePagesSince);
        Assert.Equal(Page, stats.ComprDataSize);
        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(Page, back));
        Assert.Equal(random.AsSpan(Page).ToArray(), back);
    }

    [Theory]
    [InlineData(-1L, 512)]
    [InlineData(0L, (4 << 20) + 1)]
    [InlineData((4L << 20) - 512, 1024)]
    [InlineData(4L << 20, 1)]
    public void Requests_outside_the_device_are_refused_and_counted(long offset, int length)
    {
        using ZramDevice device = Create();
        var buffer = new byte[length];
        Assert.Equal(NbdError.Invalid, device.Read(offset, buffer));
        Assert.Equal(NbdError.Invalid, device.Write(offset, buffer, fua: false));
        Assert.Equal(NbdError.Invalid, device.Trim(offset, length));
        Assert.Equal(NbdError.Invalid, device.WriteZeroes(offset, length, noHole: false, fastZero: false));
        Assert.Equal(0, device.GetExtents(offset, length, new BlockExtent[4]));
        ZramStats stats = device.GetStats();
        Assert.Equal(5, stats.InvalidIo);
        Assert.Equal(0, stats.FailedReads + stats.FailedWrites);
    }

    [Fact]
    public void A_read_only_device_refuses_changes()
    {
        using ZramDevice device = Create(readOnly: true);
        Assert.True(device.IsReadOnly);
        Assert.Equal(NbdError.NotPermitted, device.Write(0, new byte[Page], fua: false));
        Assert.Equal(NbdError.NotPermitted, device.Trim(0, Page));
        Assert.Equal(NbdError.NotPermitted, device.WriteZeroes(0, Page, noHole: true, fastZero: true));
        Assert.Equal(NbdError.None, device.Read(0, new byte[Page]));
        Assert.Equal(NbdError.None, device.Flush());
    }

    [Fact]
    public void Extents_report_holes_for_unwritten_trimmed_and_zero_slots_and_merge_neighbours()
    {
        using ZramDevice device = Create();
        Assert.Equal(NbdError.None, device.Write(2 * Page, DevicePages.TextPage(1), fua: false));
        Assert.Equal(NbdError.None, device.Write(3 * Page, DevicePages.TextPage(2), fua: false));
        Assert.Equal(NbdError.None, device.Write(4 * Page, new byte[Page], fua: false));
        Assert.Equal(NbdError.None, device.Write(5 * Page, DevicePages.TextPage(3), fua: false));
        Assert.Equal(NbdError.None, device.WriteZeroes(5 * Page, Page, noHole: true, fastZero: false));

        var extents = new BlockExtent[8];
        int count = device.GetExtents(512, 8 * Page, extents);
        Assert.Equal(
            [
                new BlockExtent(2 * Page - 512, ExtentFlags.Hole | ExtentFlags.Zero),
                new BlockExtent(2 * Page, ExtentFlags.Allocated),
                new BlockExtent(4 * Page + 512, ExtentFlags.Hole | ExtentFlags.Zero),
            ],
            extents[..count]);

        // A short span gets as many extents as fit, each whole.
        count = device.GetExtents(0, 8 * Page, extents.AsSpan(0, 2));
        Assert.Equal(2, count);
        Assert.Equal(new BlockExtent(2 * Page, ExtentFlags.Allocated), extents[1]);
    }

    [Fact]
    public void Partial_trims_zero_their_bytes_and_whole_slots_are_freed()
    {
        using ZramDevice device = Create();
        byte[] data = DevicePages.Mixed(new Random(4), 4 * Page);
        data.AsSpan(0, Page).Fill(1); // make sure slot 0 is not empty before the trim
        Assert.Equal(NbdError.None, device.Write(0, data, fua: false));
        Assert.Equal(NbdError.None, device.Trim(1024, 2 * Page));
        data.AsSpan(1024, 2 * Page).Clear();
        var back = new byte[4 * Page];
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.Equal(data, back);
        ZramStats stats = device.GetStats();
        Assert.Equal(1, stats.DiscardedPages);
        Assert.Equal(3 * Page, stats.OrigDataSize);
        Assert.Equal(1, stats.NotifyFree);
    }

    [Fact]
    public void Partial_trims_that_zero_a_whole_page_empty_its_slot()
    {
        using ZramDevice device = Create();
        byte[] data = [.. DevicePages.TextPage(1), .. DevicePages.TextPage(2)]; // compressed objects, not same-filled
        Assert.Equal(NbdError.None, device.Write(0, data, fua: false));

        // Three trims of parts of slot 0, as a client with 512-byte blocks may send them.
        Assert.Equal(NbdError.None, device.Trim(0, 1024));
        Assert.Equal(NbdError.None, device.Trim(3072, 1024));
        Assert.Equal(NbdError.None, device.Trim(1024, 2048));

        var back = new byte[2 * Page];
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.Equal(new byte[Page], back[..Page]);
        Assert.Equal(data[Page..], back[Page..]);
        device.FlushDeferredFrees();
        ZramStats stats = device.GetStats();
        Assert.True(stats.OrigDataSize == Page, $"orig_data_size {stats.OrigDataSize}: the trimmed page is still counted as stored");
        Assert.Equal(0, stats.SamePages);
        Assert.Equal(1, stats.DiscardedPages);
        Assert.Equal(1, stats.NotifyFree);
        var extents = new BlockExtent[4];
        int count = device.GetExtents(0, 2 * Page, extents);
        Assert.True(count >= 1 && extents[0] == new BlockExtent(Page, ExtentFlags.Hole | ExtentFlags.Zero),
            $"slot 0 is not a hole: {string.Join(", ", extents.Take(count))}");
    }

    [Fact]
    public void Algorithms_round_trip_and_the_higher_ratio_ones_store_less()
    {
        var random = new Random(12);
        byte[] data = new byte[256 * Page];
        for (int i = 0; i < 256; i++)
        {
            DevicePages.TextPage(i).CopyTo(data, i * Page);
        }

        long Stored(string algorithm)
        {
            using ZramDevice device = Create(algorithm: algorithm);
            Assert.Equal(NbdError.None, device.Write(0, data, fua: false));
            // Overwrite a few bytes in the middle of slots: read-modify-write with the same algorithm.
            byte[] patch = new byte[700];
            random.NextBytes(patch);
            Assert.Equal(NbdError.None, device.Write(10 * Page + 100, patch, fua: false));
            byte[] expected = data.ToArray();
            patch.CopyTo(expected, 10 * Page + 100);
            var back = new byte[data.Length];
            Assert.Equal(NbdError.None, device.Read(0, back));
            Assert.Equal(expected, back);
            return device.GetStats().ComprDataSize;
        }

        long lz4 = Stored("lz4"), lz4hc = Stored("lz4hc"), zstd = Stored("zstd"), zstd9 = Stored("zstd:9");
        Assert.True(lz4hc < lz4, $"lz4hc {lz4hc} vs lz4 {lz4}");
        Assert.True(zstd < lz4hc, $"zstd {zstd} vs lz4hc {lz4hc}");
        Assert.True(zstd9 <= zstd, $"zstd:9 {zstd9} vs zstd:3 {zstd}");
    }

    [Fact]
    public void Pages_stay_readable_after_the_algorithm_changes()
    {
        using ZramDevice device = Create(algorithm: "zstd");
        Assert.Equal("zstd:3", device.Algorithm);
        Assert.Equal(NbdError.None, device.Write(0, DevicePages.TextPage(0), fua: false));
        device.SetAlgorithm("lz4hc:12");
        Assert.Equal("lz4hc:12", device.Algorithm);
        Assert.Equal(NbdError.None, device.Write(Page, DevicePages.TextPage(1), fua: false));
        device.SetAlgorithm("lz4");
        // A partial write re-stores the zstd page with lz4.
        Assert.Equal(NbdError.None, device.Write(2048, new byte[] { 1, 2, 3 }, fua: false));
        var back = new byte[2 * Page];
        Assert.Equal(NbdError.None, device.Read(0, back));
        byte[] expected = [.. DevicePages.TextPage(0), .. DevicePages.TextPage(1)];
        expected[2048] = 1;
        expected[2049] = 2;
        expected[2050] = 3;
        Assert.Equal(expected, back);
        Assert.Throws<ArgumentException>(() => device.SetAlgorithm("lzo"));
    }

    [Theory]
    [InlineData(0L, "lz4", 90)]
    [InlineData(4097L, "lz4", 90)]
    [InlineData(1L << 20, "snappy", 90)]
    [InlineData(1L << 20, "lz4", 0)]
    [InlineData(1L << 20, "lz4", 101)]
    public void Bad_options_are_refused_with_the_reason(long size, string algorithm, int watermark)
    {
        ArgumentException e = Assert.ThrowsAny<ArgumentException>(() => new ZramDevice(
            new ZramDeviceOptions { Name = "bad", DiskSize = size, Algorithm = algorithm, CompactWatermarkPercent = watermark },
            NullLoggerFactory.Instance));
        Assert.Matches("disksize|algorithm|watermark", e.Message);
    }

    [Fact]
    public void Stats_print_as_the_kernel_prints_mm_stat_and_io_stat()
    {
        var stats = new ZramStats
        {
            OrigDataSize = 4096,
            ComprDataSize = 74,
            MemUsedTotal = 12288,
            MemLimit = 0,
            MemUsedMax = 123456789,
            SamePages = 1,
            PagesCompacted = 0,
            HugePages = 2,
            HugePagesSince = 3,
            FailedReads = 0,
            FailedWrites = 5,
            InvalidIo = 6,
            NotifyFree = 7,
        };
        Assert.Equal("    4096       74    12288        0 123456789        1        0        2        3", stats.FormatMmStat());
        // Since Linux 6.4 io_stat's third field is a literal 0 ("%8llu %8llu 0 %8llu"): invalid_io stays in status --json.
        Assert.Equal("       0        5 0        7", stats.FormatIoStat());
    }

    [Theory]
    [InlineData("lz4")]
    [InlineData("zstd")]
    public void Requests_allocate_nothing_on_the_managed_heap(string algorithm)
    {
        // The background thread stays asleep: a lock it contends could allocate its wait event once, on our thread.
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "alloc", DiskSize = 4L << 20, Algorithm = algorithm, CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance);
        byte[] data = DevicePages.Mixed(new Random(3), 64 * Page);
        var buffer = new byte[64 * Page];
        var extents = new BlockExtent[16];

        // No xunit asserts inside the measured loop: they allocate themselves.
        uint Round()
        {
            uint errors = (uint)device.Write(0, data, fua: false);
            errors |= (uint)device.Write(Page + 512, data.AsSpan(0, 1536), fua: true);
            errors |= (uint)device.Read(0, buffer);
            errors |= (uint)device.Read(700, buffer.AsSpan(0, 3000));
            errors |= (uint)device.Trim(8 * Page, 8 * Page + 100);
            errors |= (uint)device.WriteZeroes(20 * Page, 2 * Page, noHole: true, fastZero: true);
            errors |= (uint)device.Flush();
            return errors | (device.GetExtents(0, 64 * Page, extents) > 0 ? 0u : 1u);
        }

        Assert.Equal(0u, Round()); // first use: streams and pool chunks

        // A window of 20 rounds must allocate exactly 0 bytes. Up to five windows: something the runtime does once,
        // late (a tiering step, a lock's first wait), can land in one window on a loaded machine, but an allocation
        // on the request path recurs in every window.
        uint errors = 0;
        var windows = new List<long>();
        do
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 20; i++)
            {
                errors |= Round();
            }

            windows.Add(GC.GetAllocatedBytesForCurrentThread() - before);
        }
        while (windows[^1] != 0 && windows.Count < 5);

        Assert.Equal(0u, errors);
        Assert.True(windows[^1] == 0, "bytes allocated per window: " + string.Join(", ", windows));
    }

    [Fact]
    public void Reset_frees_everything_and_the_device_stays_usable()
    {
        using ZramDevice device = Create();
        byte[] data = DevicePages.Mixed(new Random(8), 64 * Page);
        Assert.Equal(NbdError.None, device.Write(0, data, fua: false));
        Assert.Equal(NbdError.Invalid, device.Read(-1, new byte[1]));
        device.Reset();
        ZramStats stats = device.GetStats();
        Assert.Equal(0, stats.OrigDataSize);
        Assert.Equal(0, stats.ComprDataSize + stats.SamePages + stats.HugePages + stats.HugePagesSince + stats.InvalidIo);
        Assert.Equal(stats.MetadataBytes, stats.MemUsedTotal);
        var back = new byte[64 * Page];
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.True(back.AsSpan().IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(NbdError.None, device.Write(0, data, fua: false));
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.Equal(data, back);
    }
}
