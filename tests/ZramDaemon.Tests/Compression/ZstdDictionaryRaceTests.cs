using ZramDaemon.Compression;

namespace ZramDaemon.Tests.Compression;

/// <summary>
/// <see cref="ZstdDictionary.MemoryBytes"/> is read by any thread (every limited write's mem_used_total, GetStats)
/// while the recompression thread makes and frees the compression tables (<see cref="ZstdDictionary.CompressionTables"/>,
/// <see cref="ZstdDictionary.ReleaseCompressionTables"/>).
/// </summary>
public class ZstdDictionaryRaceTests
{
    private const int Page = 4096;

    [Fact]
    public void MemoryBytes_read_while_the_compression_tables_are_released_never_reads_a_freed_CDict()
    {
        byte[][] pages = CompressorTests.TextPages(300);
        using ZstdDictionary dictionary = ZstdDictionary.Train(pages.SelectMany(p => p).ToArray(), Page, pages.Length, 16 << 10, level: 3, out string? error)
            ?? throw new InvalidOperationException(error);
        long without = dictionary.MemoryBytes;
        _ = dictionary.CompressionTables();
        long with = dictionary.MemoryBytes;
        dictionary.ReleaseCompressionTables();
        Assert.True(with > without);

        // The only two honest answers: with the tables, or without them. Anything else was read from a freed CDict
        // (ZSTD_sizeof_CDict on memory ZSTD_freeCDict just gave back: a use-after-free, a SIGSEGV when it was unmapped).
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<long, int>();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        var reader = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                long bytes = dictionary.MemoryBytes;
                if (bytes != with && bytes != without)
                {
                    seen.AddOrUpdate(bytes, 1, (_, c) => c + 1);
                    stop.Cancel(); // one wrong answer is enough
                }
            }
        });
        reader.Start();
        while (!stop.IsCancellationRequested)
        {
            _ = dictionary.CompressionTables();
            dictionary.ReleaseCompressionTables();
        }

        reader.Join();
        Assert.True(seen.IsEmpty, $"MemoryBytes was neither {without} nor {with}: {string.Join(", ", seen.Select(kv => $"{kv.Key} ({kv.Value}x)"))}");
    }
}
