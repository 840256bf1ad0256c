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
    [MemberData(nameof(Algorithms))]
    public void When_every_stream_is_held_a_new_one_is_made_rather_than_waited_for(string algorithm)
    {
        using var compressor = new Compressor(CompressionSpec.Parse(algorithm));
        int cpus = Environment.ProcessorCount;
        Assert.Equal(cpus, compressor.StreamCount);

        // Two more holders than CPUs, each keeping its lease until all have one: with streams only per CPU the
        // last two would wait for ever (until the barrier gave up).
        int holders = cpus + 2;
        byte[][] pages = TextPages(holders);
        var streams = new CompressionStream?[holders];
        using var allHeld = new Barrier(holders);
        bool[] met = new bool[holders];
        Thread[] threads = Enumerable.Range(0, holders).Select(i => new Thread(() =>
        {
            using CompressionStreamLease lease = compressor.Acquire();
            streams[i] = lease.Stream;
            met[i] = allHeld.SignalAndWait(TimeSpan.FromSeconds(60));
            var output = new byte[4096];
            int n = lease.Stream.Compress(pages[i], 4096);
            met[i] &= n > 0 && lease.Stream.Decompress(lease.Stream.Buffer[..n], output) && output.AsSpan().SequenceEqual(pages[i]);
        })).ToArray();
        foreach (Thread thread in threads)
        {
            thread.Start();
        }

        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(TimeSpan.FromSeconds(120)));
        }

        Assert.All(met, Assert.True);
        Assert.Equal(holders, streams.Distinct().Count());
        Assert.Equal(holders, compressor.StreamCount);

        // The new streams stay, and are what later callers take: no further growth while they are free.
        for (int round = 0; round < 10; round++)
        {
            using CompressionStreamLease lease = compressor.Acquire();
            Assert.Contains(lease.Stream, streams);
        }

        Assert.Equal(holders, compressor.StreamCount);
    }

    [Fact]
    public void Growth_stops_at_the_ceiling_and_then_callers_wait()
    {
        using var compressor = new Compressor(CompressionSpec.Parse("lz4"));
        int ceiling = Compressor.StreamsPerCpu * Environment.ProcessorCount;
        using var allHeld = new CountdownEvent(ceiling);
        using var release = new ManualResetEventSlim();
        Thread[] holders = Enumerable.Range(0, ceiling).Select(_ => new Thread(() =>
        {
            using CompressionStreamLease lease = compressor.Acquire();
            allHeld.Signal();
            release.Wait();
        })).ToArray();
        foreach (Thread holder in holders)
        {
            holder.Start();
        }

        Assert.True(allHeld.Wait(TimeSpan.FromSeconds(60)));
        Assert.Equal(ceiling, compressor.StreamCount);

        // One more: no stream is made past the ceiling, so it waits until a holder lets go.
        var late = new Thread(() =>
        {
            using CompressionStreamLease lease = compressor.Acquire();
        });
        late.Start();
        Assert.False(late.Join(TimeSpan.FromMilliseconds(200)));
        release.Set();
        Assert.True(late.Join(TimeSpan.FromSeconds(60)));
        foreach (Thread holder in holders)
        {
            Assert.True(holder.Join(TimeSpan.FromSeconds(60)));
        }

        Assert.Equal(ceiling, compressor.StreamCount);
    }

    [Theory]
    [InlineData("lz4")]
    [InlineData("lz4hc")]
    public void Lz4_decodes_without_taking_a_stream_so_a_held_stream_never_holds_up_a_read(string algorithm)
    {
        using var compressor = new Compressor(CompressionSpec.Parse(algorithm), streamCount: 1);
        byte[] page = TextPages(1)[0];
        var compressed = new byte[4096];
        int n = compressor.Compress(page, compressed);
        Assert.True(n > 0);

        // The only stream is held (a writer compressing, preempted): reads on other threads still decode.
        using (CompressionStreamLease held = compressor.Acquire())
        {
            var decoded = new bool[4];
            Thread[] readers = Enumerable.Range(0, decoded.Length).Select(i => new Thread(() =>
            {
                var output = new byte[4096];
                decoded[i] = compressor.Decompress(compressed.AsSpan(0, n), output) && output.AsSpan().SequenceEqual(page);
            })).ToArray();
            foreach (Thread reader in readers)
            {
                reader.Start();
            }

            DateTime deadline = DateTime.UtcNow.AddSeconds(30);
            Assert.All(readers, reader => Assert.True(reader.Join(Max(deadline - DateTime.UtcNow, TimeSpan.Zero)), "a read waited for the held stream"));
            Assert.All(decoded, Assert.True);
        }

        static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
    }
}
