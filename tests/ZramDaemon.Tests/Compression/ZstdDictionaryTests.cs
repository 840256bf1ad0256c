using ZramDaemon.Compression;

namespace ZramDaemon.Tests.Compression;

/// <summary>A zstd dictionary trained from pages, and the compressor that uses it (the recompressor's).</summary>
public class ZstdDictionaryTests
{
    private const int Page = 4096;

    private static byte[] Samples(byte[][] pages) => pages.SelectMany(p => p).ToArray();

    [Fact]
    public void A_dictionary_trained_from_text_pages_makes_them_smaller_and_round_trips_them()
    {
        byte[][] pages = CompressorTests.TextPages(512);
        using ZstdDictionary dictionary = ZstdDictionary.Train(Samples(pages), Page, pages.Length, 32 << 10, level: 6, out string? error)
            ?? throw new InvalidOperationException(error);
        Assert.InRange(dictionary.Size, 1024, 32 << 10);
        using var with = new Compressor(dictionary, streamCount: 2);
        Assert.Equal(CompressionAlgorithm.ZstdDictionary, with.Algorithm);
        using var without = new Compressor("zstd:6");
        var compressed = new byte[CompressionStream.BufferSize];
        var output = new byte[Page];
        long withBytes = 0, withoutBytes = 0;
        foreach (byte[] page in pages)
        {
            int n = with.Compress(page, compressed);
            Assert.InRange(n, 1, Page - 1);
            withBytes += n;
            Assert.True(with.Decompress(compressed.AsSpan(0, n), output));
            Assert.Equal(page, output);
            withoutBytes += without.Compress(page, compressed);
        }

        Assert.True(withBytes < withoutBytes * 9 / 10, $"with the dictionary {withBytes} bytes, without {withoutBytes}");
        long held = dictionary.MemoryBytes;
        Assert.True(held > dictionary.Size * 2, "the compression and decompression tables are not counted");
        dictionary.ReleaseCompressionTables();
        Assert.True(dictionary.MemoryBytes < held);

        // Decompression needs no compression tables; compression makes them again.
        int again = with.Compress(pages[0], compressed);
        dictionary.ReleaseCompressionTables();
        Assert.True(with.Decompress(compressed.AsSpan(0, again), output));
        Assert.Equal(pages[0], output);
    }

    [Fact]
    public void After_a_page_that_does_not_fit_the_next_one_still_compresses_with_the_dictionary()
    {
        byte[][] pages = CompressorTests.TextPages(300);
        using ZstdDictionary dictionary = ZstdDictionary.Train(Samples(pages), Page, pages.Length, 16 << 10, level: 3, out string? error)
            ?? throw new InvalidOperationException(error);
        using var compressor = new Compressor(dictionary, streamCount: 1);
        var output = new byte[Page];
        for (int i = 0; i < 20; i++)
        {
            // Too small a buffer: the frame is abandoned half made (the recompressor asks for a smaller size class).
            Assert.Equal(0, compressor.Compress(pages[i], new byte[16]));
            var compressed = new byte[CompressionStream.BufferSize];
            int n = compressor.Compress(pages[i], compressed);
            Assert.InRange(n, 1, Page - 1);
            Assert.True(compressor.Decompress(compressed.AsSpan(0, n), output));
            Assert.Equal(pages[i], output);
        }
    }

    [Fact]
    public void Training_from_too_little_says_why_instead_of_throwing()
    {
        var zeros = new byte[4 * Page];
        Assert.Null(ZstdDictionary.Train(zeros, Page, 4, 64 << 10, level: 3, out string? error));
        Assert.False(string.IsNullOrEmpty(error));
    }
}
