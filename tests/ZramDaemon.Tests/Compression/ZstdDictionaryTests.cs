using ZramDaemon.Compression;

namespace ZramDaemon.Tests.Compression;

/// <summary>A zstd dictionary trained from pages, and the compressor that uses it (the recompressor's).</summary>
public class ZstdDictionaryTests
{
    private const int Page = 4096;

    private static byte[] Samples(byte[][] pages) => pages.SelectMany(p => p).ToArray();

    /// <summary>A 16 KiB dictionary at level 9 trained from <paramref name="pages"/>.</summary>
    private static ZstdDictionary SmallDictionary(byte[][] pages) =>
        ZstdDictionary.Train(Samples(pages), Page, pages.Length, 16 << 10, level: 9, out string? error)
            ?? throw new InvalidOperationException(error);

    [Fact]
    public void A_dictionary_trained_from_text_pages_makes_them_smaller_and_round_trips_them()
    {
        byte[][] pages = CompressorTests.TextPages(512);
        using ZstdDictionary dictionary = ZstdDictionary.Train(Samples(pages), Page, pages.Length, 32 << 10, level: 6, out string? error)
            ?? throw new InvalidOperationException(error);
        Assert.InRange(dictionary.Size, 24 << 10, 32 << 10);
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
        dictionary.ReleaseCompressionTables();
        long kept = dictionary.MemoryBytes;
        Assert.True(kept < held, "the compression tables are not counted");
        // What stays: the dictionary and the decompression entropy tables (about 27 KiB) that refer to it, not a
        // second copy of it.
        Assert.InRange(kept - dictionary.Size, 4 << 10, 40 << 10);

        // Decompression needs no compression tables; compression makes them again.
        int again = with.Compress(pages[0], compressed);
        dictionary.ReleaseCompressionTables();
        Assert.True(with.Decompress(compressed.AsSpan(0, again), output));
        Assert.Equal(pages[0], output);
    }

    /// <summary>The recompressor's dictionary compressor: one stream, and decoders that share the dictionary.</summary>
    [Fact]
    public void With_decoders_of_its_own_pages_decode_while_the_only_stream_is_held()
    {
        byte[][] pages = CompressorTests.TextPages(300);
        using ZstdDictionary dictionary = SmallDictionary(pages);
        using var compressor = new Compressor(dictionary, streamCount: 1, decoderCount: 2);
        CompressorTests.AssertReadsDecodeWhileTheOnlyStreamIsHeld(compressor, pages[7]);
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
    public void Zero_pages_round_trip_and_random_ones_are_reported_as_not_compressible()
    {
        byte[][] pages = CompressorTests.TextPages(300);
        using ZstdDictionary dictionary = SmallDictionary(pages);
        using var compressor = new Compressor(dictionary, streamCount: 1);
        var compressed = new byte[CompressionStream.BufferSize];
        var output = new byte[Page];

        var zero = new byte[Page];
        int z = compressor.Compress(zero, compressed);
        Assert.InRange(z, 1, 64);
        Assert.True(compressor.Decompress(compressed.AsSpan(0, z), output));
        Assert.Equal(zero, output);

        // A block is never stored raw: what does not compress is 0 (the recompressor keeps the slot's object).
        var random = new byte[Page];
        new Random(7).NextBytes(random);
        Assert.Equal(0, compressor.Compress(random, compressed));
    }

    [Fact]
    public void Rejects_corrupt_blocks_without_writing_past_the_page()
    {
        byte[][] pages = CompressorTests.TextPages(300);
        using ZstdDictionary dictionary = SmallDictionary(pages);
        using var compressor = new Compressor(dictionary, streamCount: 1);
        var compressed = new byte[CompressionStream.BufferSize];
        int n = compressor.Compress(pages[7], compressed);
        Assert.InRange(n, 2, Page - 1);
        var output = new byte[Page + 64];
        output.AsSpan(Page).Fill(0xee);

        // Every truncation fails; so do garbage and empty input.
        for (int length = 0; length < n; length++)
        {
            Assert.False(compressor.Decompress(compressed.AsSpan(0, length), output.AsSpan(0, Page)), $"{length} of {n} bytes decoded");
        }

        var garbage = new byte[n];
        new Random(3).NextBytes(garbage);
        Assert.False(compressor.Decompress(garbage, output.AsSpan(0, Page)));

        // Flipped bits may decode to some page or fail, but never reach past it.
        var random = new Random(5);
        for (int i = 0; i < 2000; i++)
        {
            byte[] damaged = compressed.AsSpan(0, n).ToArray();
            damaged[random.Next(n)] ^= (byte)(1 << random.Next(8));
            compressor.Decompress(damaged, output.AsSpan(0, Page));
        }

        Assert.All(output.AsSpan(Page).ToArray(), b => Assert.Equal(0xee, b));
        // Output that decodes shorter than the destination is a failure too; the intact block still reads.
        Assert.False(compressor.Decompress(compressed.AsSpan(0, n), new byte[Page + 64]));
        Assert.True(compressor.Decompress(compressed.AsSpan(0, n), output.AsSpan(0, Page)));
        Assert.Equal(pages[7], output.AsSpan(0, Page).ToArray());
    }

    [Fact]
    public void Training_from_too_little_says_why_instead_of_throwing()
    {
        var zeros = new byte[4 * Page];
        Assert.Null(ZstdDictionary.Train(zeros, Page, 4, 64 << 10, level: 3, out string? error));
        Assert.False(string.IsNullOrEmpty(error));
    }
}
