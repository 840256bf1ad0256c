using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using ZramDaemon.Compression;
using ZsAlloc;

namespace Zram.Benchmarks;

/// <summary>
/// The fragmentation benchmark of issue 3, a console mode (<c>fragmentation [corpus] [chain limits...]</c>):
/// every 4 KiB page of a corpus of real process memory (scripts/make-corpus.sh) is LZ4-compressed with the
/// daemon's compressor; pages zram would not put in the pool (same-filled) are skipped, and pages that do not
/// compress below the huge watermark are stored raw, as zram does. The pool is filled with those objects,
/// half of them are freed at random, and the pool is compacted. Printed each time: the overhead
/// (pool bytes - stored bytes) / stored bytes, beside the kernel zsmalloc's figures on the same kind of data.
/// </summary>
internal static class ZsPoolFragmentation
{
    private const int PageSize = 4096;

    public static int Run(string[] args)
    {
        string corpus = args.Length > 0 ? args[0] : Path.Combine(FindRepositoryRoot(), ".cache", "corpus", "swap-like-512M.bin");
        if (!File.Exists(corpus))
        {
            Console.Error.WriteLine($"fragmentation: corpus {corpus} not found; build it with scripts/make-corpus.sh --only swap");
            return 2;
        }

        int[] chainLimits = args.Length > 1 ? args[1..].Select(a => int.Parse(a, CultureInfo.InvariantCulture)).ToArray() : [8, 16];
        byte[] data = File.ReadAllBytes(corpus);
        Console.WriteLine($"corpus: {corpus} ({data.Length >> 20} MiB, {data.Length / PageSize} pages)");

        // A first, small round gets the code paths compiled, so the timed compaction measures the pool, not the JIT.
        Measure(data.AsSpan(0, Math.Min(data.Length, 16 << 20)).ToArray(), chainLimits[0], quiet: true);
        foreach (int chainLimit in chainLimits)
        {
            Measure(data, chainLimit, quiet: false);
        }

        return 0;
    }

    private static void Measure(byte[] data, int chainLimit, bool quiet)
    {
        using var pool = new ZsPool(new ZsPoolOptions { ChainLimit = chainLimit, DeferredFreeCapacity = 0 });
        using var lz4 = new Lz4CompressionStream();
        int pages = data.Length / PageSize;
        var handles = new List<(uint Handle, int Size)>(pages);
        int sameFilled = 0, raw = 0;
        long stored = 0;
        for (int i = 0; i < pages; i++)
        {
            ReadOnlySpan<byte> page = data.AsSpan(i * PageSize, PageSize);
            if (IsSameFilled(page))
            {
                sameFilled++;
                continue;
            }

            int n = lz4.Compress(page, PageSize);
            ReadOnlySpan<byte> payload;
            if (n == 0 || n >= pool.HugeClassSize)
            {
                payload = page;
                raw++;
            }
            else
            {
                payload = lz4.Buffer[..n];
            }

            uint handle = pool.Malloc(payload.Length);
            pool.Write(handle, payload);
            handles.Add((handle, payload.Length));
            stored += payload.Length;
        }

        var output = quiet ? TextWriter.Null : Console.Out;
        output.WriteLine();
        output.WriteLine($"chain limit {chainLimit}: {handles.Count} objects ({sameFilled} same-filled pages skipped, {raw} stored raw), "
            + $"{stored >> 20} MiB stored, mean object {stored / Math.Max(1, handles.Count)} bytes");
        Print(output, "after filling", pool, stored, "3.1%");

        var random = new Random(42);
        var kept = new List<(uint Handle, int Size)>(handles.Count / 2 + 1);
        foreach ((uint handle, int size) in handles)
        {
            if (random.Next(2) == 0)
            {
                pool.Free(handle);
                stored -= size;
            }
            else
            {
                kept.Add((handle, size));
            }
        }

        Print(output, "after freeing half", pool, stored, "88%");

        long canCompact = pool.CanCompact();
        long poolBytes = pool.TotalPages * PageSize;
        using var process = Process.GetCurrentProcess();
        TimeSpan cpuBefore = process.TotalProcessorTime;
        var clock = Stopwatch.StartNew();
        long freed = pool.Compact();
        clock.Stop();
        process.Refresh();
        double cpuMs = (process.TotalProcessorTime - cpuBefore).TotalMilliseconds;
        Print(output, "after compaction", pool, stored, "3.7%");
        double per256 = clock.Elapsed.TotalMilliseconds * (256.0 * 1024 * 1024) / Math.Max(1, poolBytes);
        output.WriteLine($"  compaction: {freed} pages freed (zs_can_compact said {canCompact}), {pool.GetStats().ObjectsMoved} objects moved, "
            + $"{clock.Elapsed.TotalMilliseconds:F1} ms ({cpuMs:F0} ms of process CPU) for a {poolBytes >> 20} MiB pool = {per256:F1} ms per 256 MiB (kernel: about 20 ms per 256 MiB)");

        // The objects must have survived the moves.
        var back = new byte[PageSize];
        foreach ((uint handle, int size) in kept)
        {
            pool.Read(handle, back.AsSpan(0, size));
        }
    }

    private static void Print(TextWriter output, string when, ZsPool pool, long stored, string kernel)
    {
        long poolBytes = pool.TotalPages * PageSize;
        double overhead = (double)(poolBytes - stored) / stored;
        double withMetadata = (double)(poolBytes + pool.MetadataBytes - stored) / stored;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  {when,-20} pool {poolBytes >> 20,5} MiB  stored {stored >> 20,5} MiB  overhead {overhead,7:P1} (kernel {kernel,4})  with metadata {withMetadata,7:P1}"));
    }

    /// <summary>zram's page_same_filled: every 8-byte word the same. Such pages never reach the pool.</summary>
    private static bool IsSameFilled(ReadOnlySpan<byte> page)
    {
        ReadOnlySpan<ulong> words = MemoryMarshal.Cast<byte, ulong>(page);
        ulong first = words[0];
        foreach (ulong word in words)
        {
            if (word != first)
            {
                return false;
            }
        }

        return true;
    }

    private static string FindRepositoryRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir != null && !File.Exists(Path.Combine(dir, "Zram.sln")))
        {
            dir = Path.GetDirectoryName(dir);
        }

        return dir ?? Directory.GetCurrentDirectory();
    }
}
