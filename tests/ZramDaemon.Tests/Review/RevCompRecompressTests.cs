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
}
