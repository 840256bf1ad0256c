using System.Text;
using ZramDaemon.Compression;

namespace ZramDaemon.Tests.Compression;

public class CompressorTests
{
    public static TheoryData<string> Algorithms => new() { "lz4", "lz4:4", "lz4hc", "lz4hc:12", "zstd", "zstd:19" };

    /// <summary>Pages of text like what swap and filesystems hold: installed source and documentation.</summary>
    internal static byte[][] TextPages(int count)
    {
        var text = new StringBuilder();
        foreach (string file in Directory.EnumerateFiles("/usr/share/dotnet", "*.txt", SearchOption.AllDirectories)
                     .Concat(Directory.EnumerateFiles("/usr/share/dotnet", "*.json", SearchOption.AllDirectories))
                     .Concat(Directory.EnumerateFiles("/usr/share/dotnet", "*.xml", SearchOption.AllDirectories)))
        {
            text.Append(File.ReadAllText(file));
            if (text.Length > count * 4096)
            {
                break;
            }
        }

        byte[] bytes = Encoding.UTF8.GetBytes(text.ToString());
        Assert.True(bytes.Length >= count * 4096, "not enough text files under /usr/share/dotnet");
        return Enumerable.Range(0, count).Select(i => bytes.AsSpan(i * 4096, 4096).ToArray()).ToArray();
    }

    [Theory]
    [MemberData(nameof(Algorithms))]
    public void Round_trips_text_pages(string algorithm)
    {
        using var compressor = new Compressor(algorithm);
        var compressed = new byte[CompressionStream.BufferSize];
        var output = new byte[4096];
        foreach (byte[] page in TextPages(32))
        {
            int n = compressor.Compress(page, compressed);
            Assert.InRange(n, 1, 4095);
            Assert.True(compressor.Decompress(compressed.AsSpan(0, n), output));
            Assert.Equal(page, output);
        }
    }

    [Theory]
    [MemberData(nameof(Algorithms))]
    public void Round_trips_zero_and_random_pages_and_reports_what_does_not_fit(string algorithm)
    {
        using var compressor = new Compressor(algorithm);
        var compressed = new byte[CompressionStream.BufferSize];
        var output = new byte[4096];

        var zero = new byte[4096];
        int z = compressor.Compress(zero, compressed);
        Assert.InRange(z, 1, 64);
        Assert.True(compressor.Decompress(compressed.AsSpan(0, z), output));
        Assert.Equal(zero, output);

        var random = new byte[4096];
        new Random(7).NextBytes(random);
        Assert.Equal(0, compressor.Compress(random, compressed.AsSpan(0, 4096 - 1)));
        int r = compressor.Compress(random, compressed);
        Assert.True(r >= 4096, $"random data compressed to {r} bytes");
        Assert.True(compressor.Decompress(compressed.AsSpan(0, r), output));
        Assert.Equal(random, output);
    }

    [Theory]
    [MemberData(nameof(Algorithms))]
    public void Rejects_corrupt_input_without_writing_past_the_page(string algorithm)
    {
        using var compressor = new Compressor(algorithm);
        byte[] page = TextPages(1)[0];
        var compressed = new byte[CompressionStream.BufferSize];
        int n = compressor.Compress(page, compressed);
        var output = new byte[4096 + 64];
        output.AsSpan(4096).Fill(0xee);

        // Truncated input, and a page's worth of garbage, must both fail cleanly.
        Assert.False(compressor.Decompress(compressed.AsSpan(0, n / 2), output.AsSpan(0, 4096)));
        var garbage = new byte[n];
        new Random(3).NextBytes(garbage);
        Assert.False(compressor.Decompress(garbage, output.AsSpan(0, 4096)));
        Assert.All(output.AsSpan(4096).ToArray(), b => Assert.Equal(0xee, b));
        // Output that decodes shorter than the destination is a failure too.
        Assert.False(compressor.Decompress(compressed.AsSpan(0, n), new byte[4096 + 64]));
    }

    [Fact]
    public void Higher_ratio_algorithms_give_smaller_pages()
    {
        byte[][] pages = TextPages(64);
        long Total(string algorithm)
        {
            using var compressor = new Compressor(algorithm);
            var compressed = new byte[CompressionStream.BufferSize];
            return pages.Sum(p => (long)compressor.Compress(p, compressed));
        }

        long lz4 = Total("lz4"), lz4hc = Total("lz4hc:9"), zstd = Total("zstd:3"), fast = Total("lz4:16");
        Assert.True(lz4hc < lz4, $"lz4hc {lz4hc} vs lz4 {lz4}");
        Assert.True(zstd < lz4, $"zstd {zstd} vs lz4 {lz4}");
        Assert.True(fast > lz4, $"lz4 acceleration 16 {fast} vs lz4 {lz4}");
    }

    [Theory]
    [MemberData(nameof(Algorithms))]
    public void Streams_are_not_shared_between_threads(string algorithm)
    {
        using var compressor = new Compressor(CompressionSpec.Parse(algorithm), streamCount: 2);
        byte[][] pages = TextPages(16);
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, t =>
        {
            var output = new byte[4096];
            for (int round = 0; round < 50; round++)
            {
                byte[] page = pages[(t + round) % pages.Length];
                using CompressionStreamLease lease = compressor.Acquire();
                int n = lease.Stream.Compress(page, 4096);
                Assert.True(n > 0);
                Assert.True(lease.Stream.Decompress(lease.Stream.Buffer[..n], output));
                Assert.Equal(page, output);
            }
        });
    }

    [Theory]
    [InlineData("lz4")]
    [InlineData("lz4hc")]
    public void Lz4_decodes_without_taking_a_stream_so_a_held_stream_never_holds_up_a_read(string algorithm)
    {
        using var compressor = new Compressor(CompressionSpec.Parse(algorithm), streamCount: 1);
        AssertReadsDecodeWhileTheOnlyStreamIsHeld(compressor, TextPages(1)[0]);
    }

    /// <summary>zstd needs state to decode: a compressor given decoders of its own (the recompressor's, whose one
    /// stream is busy compressing at a slow level) decodes there, not in its stream.</summary>
    [Fact]
    public void Zstd_with_decoders_of_its_own_decodes_while_its_only_stream_is_held()
    {
        using var compressor = new Compressor(CompressionSpec.Parse("zstd:19"), streamCount: 1, decoderCount: 2);
        AssertReadsDecodeWhileTheOnlyStreamIsHeld(compressor, TextPages(1)[0]);
    }

    [Fact]
    public void A_decoder_decodes_what_its_stream_compressed_and_cannot_compress()
    {
        using var stream = Compressor.CreateStream(CompressionSpec.Parse("zstd:19"));
        using CompressionStream decoder = stream.CreateDecoder();
        Assert.True(decoder.IsDecoder);
        byte[] page = TextPages(1)[0];
        int n = stream.Compress(page, 4096);
        Assert.True(n > 0);
        var output = new byte[4096];
        Assert.True(decoder.Decompress(stream.Buffer[..n], output));
        Assert.Equal(page, output);
        Assert.Throws<InvalidOperationException>(() => decoder.Compress(page, 4096));
        Assert.Throws<InvalidOperationException>(() => decoder.Buffer.Length);
        using var lz4 = Compressor.CreateStream(CompressionSpec.Default);
        Assert.Throws<NotSupportedException>(() => lz4.CreateDecoder());
    }

    /// <summary>
    /// Holds <paramref name="compressor"/>'s only stream (a writer or the recompressor compressing, preempted) and
    /// decodes <paramref name="page"/> on four other threads: each must finish (30 s is only the failure detector).
    /// </summary>
    internal static void AssertReadsDecodeWhileTheOnlyStreamIsHeld(Compressor compressor, byte[] page)
    {
        var compressed = new byte[4096];
        int n = compressor.Compress(page, compressed);
        Assert.True(n > 0);

        using (CompressionStreamLease held = compressor.Acquire())
        {
            var decoded = new bool[4];
            Thread[] readers = Enumerable.Range(0, decoded.Length).Select(i => new Thread(() =>
            {
                var output = new byte[4096];
                decoded[i] = compressor.Decompress(compressed.AsSpan(0, n), output) && output.AsSpan().SequenceEqual(page);
            })).ToArray();
            ThreadsWithin.StartAndJoin(readers, TimeSpan.FromSeconds(30), "a read waited for the held stream");
            Assert.All(decoded, Assert.True);
        }
    }
}
