using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Compression;
using ZramDaemon.Device;
using ZsAlloc;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (compression): the huge threshold at the byte, as the kernel's zram_write_page ("if (comp_len &gt;=
/// huge_class_size) comp_len = PAGE_SIZE"): a page that compresses to one byte less than the pool's huge class size is
/// stored compressed, one that compresses to exactly it is stored raw and counted in huge_pages; both read back.
/// The bounded compression (CompressionStream.Compress with maxLength = huge class size - 1) must neither refuse the
/// first (a conservative library margin would store it raw) nor accept the second.
/// </summary>
public sealed class RevCompHugeBoundaryTests
{
    private const int Page = ZramDevice.PageSize;

    /// <summary>A page that <paramref name="stream"/> compresses to exactly <paramref name="target"/> bytes given all
    /// the room it wants: a random prefix, then zeros or a sparse pattern (sizes step by about one byte with the
    /// prefix length), or null if none of the prefix lengths gives it.</summary>
    private static byte[]? PageCompressingTo(CompressionStream stream, int target)
        => PrefixPages().FirstOrDefault(page => stream.Compress(page, CompressionStream.BufferSize) == target);

    /// <summary>Pages whose compressed sizes step by about a byte: a random prefix then zeros, then a random prefix
    /// then a sparse pattern, for prefix lengths from 2048 bytes up.</summary>
    internal static IEnumerable<byte[]> PrefixPages()
    {
        var noise = new byte[Page];
        new Random(1).NextBytes(noise);
        for (int k = 2048; k < 2 * Page; k++)
        {
            int prefix = k % Page;
            var page = new byte[Page];
            noise.AsSpan(0, prefix).CopyTo(page);
            for (int j = prefix; k >= Page && j < Page; j += 7)
            {
                page[j] = (byte)(j * 31);
            }

            yield return page;
        }
    }

    [Theory]
    [InlineData("lz4")]
    [InlineData("lz4hc")]
    [InlineData("lz4hc:3")]
    public void A_page_one_byte_under_the_huge_class_is_stored_compressed_and_one_at_it_raw(string algorithm)
    {
        int huge;
        using (var pool = new ZsPool())
        {
            huge = pool.HugeClassSize;
        }

        using CompressionStream stream = Compressor.CreateStream(CompressionSpec.Parse(algorithm));
        byte[]? under = PageCompressingTo(stream, huge - 1);
        byte[]? at = PageCompressingTo(stream, huge);
        Assert.True(under is not null && at is not null, $"precondition: no page of the family compresses to {huge - 1} and {huge} bytes with {algorithm}");

        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = 1L << 20, Algorithm = algorithm }, NullLoggerFactory.Instance);
        Assert.Equal(NbdError.None, device.Write(0, under, fua: false));
        ZramStats stats = device.GetStats();
        Assert.True(stats.HugePages == 0 && stats.ComprDataSize == huge - 1,
            $"a page {algorithm} compresses to {huge - 1} bytes (huge class {huge}) was stored as huge_pages={stats.HugePages}, compr_data_size={stats.ComprDataSize}");

        Assert.Equal(NbdError.None, device.Write(Page, at, fua: false));
        stats = device.GetStats();
        Assert.True(stats.HugePages == 1 && stats.ComprDataSize == huge - 1 + Page,
            $"a page {algorithm} compresses to {huge} bytes (huge class {huge}) was stored as huge_pages={stats.HugePages}, compr_data_size={stats.ComprDataSize}");

        var back = new byte[2 * Page];
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.True(back.AsSpan(0, Page).SequenceEqual(under) && back.AsSpan(Page).SequenceEqual(at), "a boundary page reads back different");
    }
}
