using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Compression;
using ZramDaemon.Device;
using ZramDaemon.Device.Recompression;
using ZsAlloc;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (compression): zstd needs room past the end of its output. ZSTD_compressCCtx (and ZSTD_compressBlock) write
/// the entropy-coded sequences through a bit stream that stops sizeof(size_t) bytes before dstCapacity, and a block
/// that cannot be written that way falls back to a raw block, larger than the page: so a page whose frame is N bytes
/// compresses only when dstCapacity is at least N + 8 or N + 9 (measured on 725 to 784 pages of 3000-4000 bytes at
/// each of zstd:1, :3 and :19: every one needed 8 or 9 bytes more; lz4 and lz4hc none). zramd bounds the output at what it wants to store: CompressionStream.Compress(page,
/// maxLength) passes dstCapacity = maxLength, with maxLength = huge class size - 1 on the write path
/// (ZramDevice.StorePage / StoreDeduplicated: "lease.Stream.Compress(page, _maxCompressedSize)") and
/// min(old size - 1, that) in RecompressSlot. The kernel compresses into its two-page stream buffer
/// (zcomp_compress: ".dst_len = 2 * PAGE_SIZE") and only then compares ("if (comp_len &gt;= huge_class_size)
/// comp_len = PAGE_SIZE" in zram_write_page; the class indexes in recompress_slot). So with zstd every page whose
/// frame falls in the last 8-9 bytes below huge_class_size is stored raw (a whole 4096-byte page instead of
/// huge_class_size - 1 bytes or less), counted in huge_pages (and huge_pages_since) where the kernel counts none, and
/// made a candidate for recompress type=huge and for the writeback of huge pages; and a recompression to zstd whose
/// result lands there is refused and the slot marked as not shrinkable. LZ4 needs no such room (RevCompHugeBoundaryTests).
/// </summary>
public sealed class RevCompZstdBoundTests
{
    private const int Page = ZramDevice.PageSize;

    private static int HugeClassSize()
    {
        using var pool = new ZsPool();
        return pool.HugeClassSize;
    }

    /// <summary>The first page of three families (a random prefix, then zeros or a sparse pattern; random bytes with
    /// short matches)
    /// that <paramref name="fits"/> accepts, by <paramref name="algorithm"/>'s full-room compressed size.</summary>
    private static byte[]? FindPage(string algorithm, Func<byte[], int, bool> fits)
    {
        using CompressionStream stream = Compressor.CreateStream(CompressionSpec.Parse(algorithm));
        foreach (byte[] page in RevCompHugeBoundaryTests.PrefixPages())
        {
            if (fits(page, stream.Compress(page, CompressionStream.BufferSize)))
            {
                return page;
            }
        }

        var noise = new byte[Page];
        new Random(1).NextBytes(noise);

        // Random bytes with 8 of every 98 copied from 64 bytes back (short matches at one offset: cheap for zstd's
        // repeat offsets, 3 bytes each for lz4), the last k bytes a copy of the first: sizes step by about a byte with k.
        for (int k = 0; k < 400; k++)
        {
            var page = (byte[])noise.Clone();
            for (int c = 0; c + 98 <= Page; c += 98)
            {
                page.AsSpan(c + 90 - 64, 8).CopyTo(page.AsSpan(c + 90));
            }

            page.AsSpan(0, k).CopyTo(page.AsSpan(Page - k));
            if (fits(page, stream.Compress(page, CompressionStream.BufferSize)))
            {
                return page;
            }
        }

        return null;
    }

    private static int FullSize(string algorithm, byte[] page)
    {
        using CompressionStream stream = Compressor.CreateStream(CompressionSpec.Parse(algorithm));
        return stream.Compress(page, CompressionStream.BufferSize);
    }

    /// <summary>FAILS on the current code (see the class summary): a page zstd compresses to a few bytes under the huge
    /// class size is stored raw and counted as huge.</summary>
    [Theory]
    [InlineData("zstd:1")]
    [InlineData("zstd:3")]
    [InlineData("zstd:19")]
    [InlineData("zstd:3", true)]
    public void A_page_zstd_compresses_just_under_the_huge_class_is_stored_compressed_not_huge(string algorithm, bool dedup = false)
    {
        int huge = HugeClassSize();
        // The last bytes under the huge class size: compressed there by the kernel.
        byte[]? page = FindPage(algorithm, (_, n) => n >= huge - 8 && n < huge);
        Assert.True(page is not null, $"precondition: no page of the family compresses with {algorithm} to {huge - 8}..{huge - 1} bytes");
        int size = FullSize(algorithm, page);

        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = 1L << 20, Algorithm = algorithm, Dedup = dedup }, NullLoggerFactory.Instance);
        Assert.Equal(NbdError.None, device.Write(0, page, fua: false));

        ZramStats stats = device.GetStats();
        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.Equal(page, back);
        Assert.True(stats.HugePages == 0 && stats.ComprDataSize == size,
            $"{algorithm} compresses the page to {size} bytes, under the huge class size {huge}, yet it was stored raw: huge_pages={stats.HugePages}, "
            + $"compr_data_size={stats.ComprDataSize} (the kernel stores {size} bytes and counts no huge page; zstd was given only {huge - 1} bytes of room)");
    }

    /// <summary>FAILS on the current code (see the class summary): a huge slot that zstd, the recompression algorithm,
    /// brings a few bytes under the huge class size is left raw and marked as not shrinkable.</summary>
    [Fact]
    public void Recompression_to_zstd_just_under_the_huge_class_is_kept()
    {
        int huge = HugeClassSize();
        // lz4 cannot bring the page under the huge class (stored raw); zstd:3 brings it into its last bytes.
        byte[]? page = FindPage("zstd:3", (p, n) => n >= huge - 8 && n < huge && FullSize("lz4", p) >= huge);
        Assert.True(page is not null, $"precondition: no page of the family is huge for lz4 and {huge - 8}..{huge - 1} bytes for zstd:3");
        int size = FullSize("zstd:3", page);

        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = 1L << 20,
            Algorithm = "lz4",
            RecompressAlgorithm = "zstd:3",
        }, NullLoggerFactory.Instance);
        Assert.Equal(NbdError.None, device.Write(0, page, fua: false));
        Assert.Equal(1, device.GetStats().HugePages);

        RecompressionResult result = device.Recompress(SlotSelection.Huge);

        ZramStats stats = device.GetStats();
        var back = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.Equal(page, back);
        Assert.True(result.Recompressed == 1 && stats.HugePages == 0 && stats.ComprDataSize == size,
            $"zstd:3 compresses the huge page to {size} bytes (huge class size {huge}), yet recompress type=huge left it raw: "
            + $"{result.Recompressed} recompressed, huge_pages={stats.HugePages}, compr_data_size={stats.ComprDataSize}; the kernel's recompress_slot stores it");
    }
}
