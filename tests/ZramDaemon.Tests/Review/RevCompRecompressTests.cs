using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Compression;
using ZramDaemon.Device;
using ZramDaemon.Device.Recompression;
using ZramDaemon.Tests.Device;

namespace ZramDaemon.Tests.Review;

/// <summary>Review (compression layer): recompression against the kernel's recompress_slot semantics.</summary>
public sealed class RevCompRecompressTests
{
    private const int Page = ZramDevice.PageSize;

    private static ZramDevice Create(string primary = "lz4", string recompress = "zstd:3")
        => new(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 1L << 20,
            Algorithm = primary,
            RecompressAlgorithm = recompress,
        }, NullLoggerFactory.Instance);

    /// <summary>What <paramref name="algorithm"/> makes of <paramref name="page"/> with all the room it wants.</summary>
    private static int CompressedSize(string algorithm, byte[] page)
    {
        using CompressionStream stream = Compressor.CreateStream(CompressionSpec.Parse(algorithm));
        int n = stream.Compress(page, CompressionStream.BufferSize);
        Assert.True(n > 0, $"{algorithm} did not compress the page");
        return n;
    }

    /// <summary>
    /// FAILS on the current code. The kernel's recompress threshold bounds both sides: recompress_slot skips an object
    /// smaller than the threshold ("if (comp_len_old &lt; threshold) return 0") AND keeps the old object when the new
    /// one is not below it ("if (class_index_new &gt;= class_index_old || (threshold &amp;&amp; comp_len_new &gt;= threshold))
    /// { ... continue; }", drivers/block/zram/zram_drv.c, recompress_slot): `threshold=N` means "bring objects of N
    /// bytes or more under N". zramd's RecompressSlot (ZramDevice.cs) checks only the old size
    /// ("SlotInfo.Size(candidate) &lt; threshold") and then stores any result in a smaller class, so a run with a
    /// threshold replaces objects the kernel would leave, spends the CPU of a second pass on them later, and reports
    /// them in recompressed_pages. The page here: lz4 stores it at old bytes, zstd:3 makes new &lt; old bytes of it
    /// (a smaller class); threshold = new: the kernel keeps the lz4 object (new &gt;= threshold).
    /// </summary>
    [Fact]
    public void A_threshold_also_refuses_a_result_that_is_not_below_it_as_the_kernel_does()
    {
        using ZramDevice device = Create();
        byte[] page = DevicePages.TextPage(3);
        Assert.Equal(NbdError.None, device.Write(0, page, fua: false));
        long oldSize = device.GetStats().ComprDataSize;
        int newSize = CompressedSize("zstd:3", page);
        Assert.Equal(CompressedSize("lz4", page), oldSize);
        Assert.True(newSize + 32 < oldSize, $"precondition: zstd:3 ({newSize}) must store the page in a smaller class than lz4 ({oldSize})");

        RecompressionResult result = device.Recompress(SlotSelection.All, threshold: newSize);

        ZramStats stats = device.GetStats();
        Assert.True(result.Recompressed == 0 && stats.ComprDataSize == oldSize,
            $"recompress threshold={newSize}: the {oldSize}-byte lz4 object was replaced by a {stats.ComprDataSize}-byte one "
            + $"({result.Recompressed} recompressed); the kernel's recompress_slot keeps it, since the new size is not below the threshold");
        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.Equal(page, back);
    }

    /// <summary>
    /// FAILS on the current code. The kernel's max_pages bounds the pages a run works on, not the ones it manages to
    /// shrink: recompress_slot decrements it for every page it compressed again, "even when current recompression was
    /// unsuccessful or did not compress the page below the threshold, because we still spent resources on it"
    /// (drivers/block/zram/zram_drv.c, recompress_slot; recompress_store stops when it reaches 0). zramd's Recompress
    /// (ZramDevice.cs: "index &lt; _slots.Count &amp;&amp; (maxPages == 0 || recompressed &lt; maxPages)") counts only the
    /// pages recompressed, so `zramd recompress NAME type=huge max_pages=8` on a device whose huge pages mostly do not
    /// compress works on every one of them (each a full decompress-and-compress at the recompression level) until 8
    /// shrink or the run's time limit ends it: the bound a user sets to cap the run's CPU does not cap it. Here 40
    /// incompressible huge pages come before 8 that zstd can shrink; max_pages=8 works on all 48.
    /// </summary>
    [Fact]
    public void Max_pages_bounds_the_pages_a_run_works_on_as_the_kernel_does()
    {
        using ZramDevice device = Create();
        var random = new Random(11);
        const int incompressible = 40, compressible = 8, maxPages = 8;
        for (int i = 0; i < incompressible + compressible; i++)
        {
            var page = new byte[Page];
            random.NextBytes(page);
            if (i >= incompressible)
            {
                // Random nibbles: lz4 cannot bring them under the huge class, zstd's entropy coder can.
                for (int j = 0; j < page.Length; j++)
                {
                    page[j] &= 0x0f;
                }
            }

            Assert.Equal(NbdError.None, device.Write((long)i * Page, page, fua: false));
        }

        Assert.Equal(incompressible + compressible, device.GetStats().HugePages);

        RecompressionResult result = device.Recompress(SlotSelection.Huge, maxPages: maxPages);

        Assert.True(result.Candidates <= maxPages,
            $"recompress type=huge max_pages={maxPages} worked on {result.Candidates} pages ({result.Recompressed} recompressed); "
            + $"the kernel's recompress_slot counts every page it tries against max_pages and stops after {maxPages}");
    }
}
