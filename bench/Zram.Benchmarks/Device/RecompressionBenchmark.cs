using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Device.Recompression;

namespace Zram.Benchmarks.Device;

/// <summary>
/// Issue 10's recompression figures, on the swap-like corpus (scripts/make-corpus.sh):
/// 1. memory: the corpus written with lz4, every page marked idle and recompressed (zram's idle=all then
///    recompress type=idle), then compacted: mem_used_total per GiB stored at each step, per recompression level;
/// 2. interference: 4 KiB writes from one thread per CPU to a region beside the corpus (all marked idle), in
///    windows alternating without and with the background recompressor working through the idle corpus, in one
///    run, so the ratio is what the recompressor costs the foreground; each window with it prints the pages it
///    recompressed and the CPU time it used (see <see cref="MeasureInterference"/>).
///    With --dictionary SIZE, each level is measured once more with a dictionary of SIZE bytes trained from the
///    idle pages (recompress-dictionary), and the interference part runs with it; --dictionary-only leaves out the
///    runs without one.
/// 3. with --nbdkit, nbdkit's memory plugin (allocator=zstd, 32 KiB blocks) stores the same file through nbdcopy in the
///    same run: its resident memory (VmRSS) per GiB stored, the figure issue 10 compares against.
/// Usage: Zram.Benchmarks recompress [--levels zstd:3,zstd:9] [--dictionary 262144 [--dictionary-only]] [--nbdkit] [--seconds 2] [--rounds 5] [--cpu-percent 10] [--threads CPUS] [FILE]
/// </summary>
internal static class RecompressionBenchmark
{
    private const int Page = ZramDevice.PageSize;

    public static int Run(string[] args)
    {
        string[] levels = ["zstd:3", "zstd:9"];
        double seconds = 2;
        int rounds = 5;
        int cpuPercent = 10;
        int threads = Environment.ProcessorCount;
        int dictionary = 0;
        bool nbdkit = false;
        bool dictionaryOnly = false;
        string? file = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--levels":
                    levels = args[++i].Split(',');
                    break;
                case "--seconds":
                    seconds = double.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                case "--rounds":
                    rounds = int.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                case "--threads":
                    threads = int.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                case "--dictionary":
                    dictionary = int.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                case "--nbdkit":
                    nbdkit = true;
                    break;
                case "--dictionary-only":
                    dictionaryOnly = true;
                    break;
                case "--cpu-percent":
                    cpuPercent = int.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                default:
                    file = args[i];
                    break;
            }
        }

        file ??= Path.Combine(DeviceMemoryBenchmark.FindRepositoryRoot(), ".cache", "corpus", "swap-like-512M.bin");
        if (!File.Exists(file))
        {
            Console.Error.WriteLine($"no corpus {file}: run scripts/make-corpus.sh first");
            return 1;
        }

        double gib = new FileInfo(file).Length / (double)(1L << 30);
        Console.WriteLine($"corpus {Path.GetFileName(file)}; MiB/GiB = mem_used_total per GiB stored");
        if (nbdkit)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"nbdkit memory allocator=zstd: VmRSS {NbdkitZstdRssPerGiB(file, gib):F1} MiB/GiB after nbdcopy"));
        }

        Console.WriteLine($"{"recompress",-18} {"lz4",8} {"recomp.",8} {"compact.",8} {"pages",8} {"of idle",8} {"saved MiB",9} {"seconds",7} {"pages/s",7}   (MiB/GiB after writing, recompressing, compacting)");
        foreach ((string level, int dictionarySize) in levels.SelectMany(l => dictionary == 0 ? [(l, 0)] : dictionaryOnly ? [(l, dictionary)] : new[] { (l, 0), (l, dictionary) }))
        {
            using ZramDevice device = CreateFilled(file, level, dictionarySize, cpuPercent);
            double lz4 = PerGiB(device, gib);
            long idle = device.MarkIdle();
            var clock = Stopwatch.StartNew();
            RecompressionResult result = device.Recompress(SlotSelection.Idle);
            clock.Stop();
            double recompressed = PerGiB(device, gib);
            device.Compact();
            double compacted = PerGiB(device, gib);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{level + (dictionarySize > 0 ? $"+dict{dictionarySize >> 10}K" : string.Empty),-18} {lz4,8:F1} {recompressed,8:F1} {compacted,8:F1} {result.Recompressed,8} {idle,8} {result.BytesSaved / (double)(1 << 20),9:F1} {clock.Elapsed.TotalSeconds,7:F1} {result.Candidates / clock.Elapsed.TotalSeconds,7:F0}"));
        }

        MeasureInterference(file, levels[0], dictionary, seconds, rounds, cpuPercent, threads);
        return 0;
    }

    /// <summary>nbdkit memory allocator=zstd holding the file (written with nbdcopy): its VmRSS in MiB per GiB stored.</summary>
    private static double NbdkitZstdRssPerGiB(string file, double gib)
    {
        string dir = Directory.CreateTempSubdirectory("zramd-nbdkit-").FullName;
        string socket = Path.Combine(dir, "nbd.sock");
        using var nbdkit = Process.Start(new ProcessStartInfo("nbdkit",
            ["-f", "-U", socket, "memory", new FileInfo(file).Length.ToString(CultureInfo.InvariantCulture), "allocator=zstd"]))
            ?? throw new InvalidOperationException("nbdkit did not start (scripts/bench/compare.sh installs it)");
        try
        {
            for (int i = 0; i < 400 && !File.Exists(socket); i++)
            {
                Thread.Sleep(50);
            }

            using var nbdcopy = Process.Start(new ProcessStartInfo("nbdcopy", [file, $"nbd+unix:///?socket={socket}"]))
                ?? throw new InvalidOperationException("nbdcopy did not start");
            nbdcopy.WaitForExit();
            if (nbdcopy.ExitCode != 0)
            {
                throw new IOException($"nbdcopy into nbdkit failed ({nbdcopy.ExitCode})");
            }

            string rss = File.ReadLines($"/proc/{nbdkit.Id}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
            long kib = long.Parse(rss.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
            return kib / 1024.0 / gib;
        }
        finally
        {
            nbdkit.Kill();
            nbdkit.WaitForExit();
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// Part 2. One device holds the corpus, all of it marked idle, and after it a region as large as the corpus (64 MiB
    /// at most) that the writers rewrite at random. The writers never touch the idle corpus: writing over it makes
    /// its pages active and leaves the recompressor nothing to do (the first version of this part wrote over the
    /// corpus itself; with a 64 MiB corpus its recompressor did 46 pages in the first window and none after). The
    /// windows alternate (ABBA) between no recompressor and one started for the window (the device's own class,
    /// at the budget given, idle time far beyond the run, so it takes only the pages marked idle), and each
    /// window with it prints what it recompressed and the CPU time its thread used. Round 0 is a warm-up, not
    /// counted: the first window with the recompressor builds the dictionary's compression tables. Besides IOPS, each
    /// window's writes per second of the writer threads' own CPU time: the load of other processes changes how much
    /// CPU the writers get far more than a 10 % recompressor does, but not what a write costs once it runs, so that
    /// ratio shows a cost per write (locks, caches) through the noise (the CPU the recompressor takes from the
    /// writers does not show in it: that is the IOPS ratio's part).
    /// </summary>
    private static void MeasureInterference(string file, string level, int dictionary, double seconds, int rounds, int cpuPercent, int threads)
    {
        byte[] corpus = File.ReadAllBytes(file);
        long corpusBytes = (corpus.LongLength + Page - 1) & ~(long)(Page - 1);
        int writerPages = (int)Math.Min(16384, corpusBytes / Page);
        using ZramDevice device = Create(corpusBytes + ((long)writerPages * Page), level, dictionary, cpuPercent);
        DeviceMemoryBenchmark.WriteThroughApi(device, file);
        long idle = device.MarkIdle();
        for (int i = 0; i < writerPages; i++)
        {
            WritePage(device, corpusBytes + ((long)i * Page), corpus.AsSpan(i * Page, Page));
        }

        // Trains the dictionary at full speed on this thread (at 10 % it would take the first minutes of the run).
        device.Recompress(SlotSelection.Idle, maxPages: 1);
        Console.WriteLine();
        Console.WriteLine($"4 KiB writes, {threads} threads, to a {writerPages >> 8} MiB region beside {idle} idle pages; {seconds} s windows alternating without and with the background recompressor {level}{(dictionary > 0 ? $" with a {dictionary >> 10} KiB dictionary" : string.Empty)} at {cpuPercent}% of a CPU (nice {Recompressor.NiceFor(cpuPercent)})");
        Console.WriteLine($"{"round",5} {"without IOPS",12} {"with IOPS",10} {"with/without",12} {"per CPU-s w/wo",14} {"pages recompressed",18} {"KiB saved",9} {"recompressor CPU",16} {"of a CPU",8}");
        var ratios = new List<double>();
        var cpuRatios = new List<double>();
        double sumWith = 0, sumWithout = 0, sumCpu = 0, sumPerCpuWith = 0, sumPerCpuWithout = 0;
        long sumPages = 0;
        for (int round = 0; round <= rounds; round++)
        {
            double without = 0, with = 0, perCpuWithout = 0, perCpuWith = 0;
            long pages = 0, saved = 0;
            TimeSpan cpu = TimeSpan.Zero;
            double share = 0;
            for (int window = 0; window < 2; window++)
            {
                // ABBA: even rounds start without the recompressor, odd ones with it, so a drift of the machine's
                // load favours neither.
                if ((window == 0) == (round % 2 == 0))
                {
                    (without, perCpuWithout) = WriteIops(device, corpus, threads, seconds, corpusBytes, writerPages);
                    continue;
                }

                ZramStats before = device.GetStats();
                using var recompressor = new Recompressor(device, TimeSpan.FromHours(1), cpuPercent, NullLogger.Instance);
                var clock = Stopwatch.StartNew();
                (with, perCpuWith) = WriteIops(device, corpus, threads, seconds, corpusBytes, writerPages);
                cpu = recompressor.CpuTime;
                share = cpu / clock.Elapsed * 100;
                ZramStats after = device.GetStats();
                pages = after.RecompressedPages - before.RecompressedPages;
                saved = after.RecompressBytesSaved - before.RecompressBytesSaved;
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{(round == 0 ? "warm" : round.ToString(CultureInfo.InvariantCulture)),5} {without,12:F0} {with,10:F0} {with / without,12:F3} {perCpuWith / perCpuWithout,14:F3} {pages,18} {saved >> 10,9} {cpu.TotalMilliseconds,13:F0} ms {share,7:F1}%"));
            if (round == 0)
            {
                continue;
            }

            ratios.Add(with / without);
            cpuRatios.Add(perCpuWith / perCpuWithout);
            sumPerCpuWith += perCpuWith;
            sumPerCpuWithout += perCpuWithout;
            sumWith += with;
            sumWithout += without;
            sumCpu += share;
            sumPages += pages;
        }

        ratios.Sort();
        cpuRatios.Sort();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"writes per writer CPU-second: without {sumPerCpuWithout / rounds:F0}, with {sumPerCpuWith / rounds:F0}, ratio of means {sumPerCpuWith / sumPerCpuWithout:F3}, median {cpuRatios[cpuRatios.Count / 2]:F3}, min {cpuRatios[0]:F3}, max {cpuRatios[^1]:F3}"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"total: without {sumWithout / rounds:F0} IOPS, with {sumWith / rounds:F0} IOPS, ratio of means {sumWith / sumWithout:F3}, median ratio {ratios[ratios.Count / 2]:F3}, min {ratios[0]:F3}, max {ratios[^1]:F3}; recompressor {sumPages / (double)rounds:F0} pages and {sumCpu / rounds:F1}% of a CPU a window (budget {cpuPercent}%)"));
    }

    /// <summary>Writes corpus pages over the <paramref name="pages"/> pages from <paramref name="regionStart"/> from
    /// several threads for a while: writes per second, and per second of the writer threads' CPU time.</summary>
    private static (double Iops, double PerCpuSecond) WriteIops(ZramDevice device, byte[] corpus, int threads, double seconds, long regionStart, int pages)
    {
        long total = 0, cpuNanoseconds = 0;
        var deadline = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        var clock = Stopwatch.StartNew();
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            var random = new Random(t);
            long n = 0;
            long cpuStart = Recompressor.ThreadCpuNanoseconds();
            while ((n & 63) != 0 || Stopwatch.GetTimestamp() < deadline)
            {
                int source = random.Next(corpus.Length / Page);
                WritePage(device, regionStart + ((long)random.Next(pages) * Page), corpus.AsSpan(source * Page, Page));
                n++;
            }

            Interlocked.Add(ref cpuNanoseconds, Recompressor.ThreadCpuNanoseconds() - cpuStart);
            Interlocked.Add(ref total, n);
        });
        return (total / clock.Elapsed.TotalSeconds, total / (cpuNanoseconds / 1e9));
    }

    private static void WritePage(ZramDevice device, long offset, ReadOnlySpan<byte> page)
    {
        if (device.Write(offset, page, fua: false) != NbdError.None)
        {
            throw new IOException($"write at {offset} failed");
        }
    }

    private static ZramDevice CreateFilled(string file, string level, int dictionary, int cpuPercent)
    {
        ZramDevice device = Create((new FileInfo(file).Length + Page - 1) & ~(long)(Page - 1), level, dictionary, cpuPercent);
        DeviceMemoryBenchmark.WriteThroughApi(device, file);
        return device;
    }

    /// <summary>A device without a background recompressor of its own (recompression only on request).</summary>
    private static ZramDevice Create(long diskSize, string level, int dictionary, int cpuPercent)
        => new(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = diskSize,
            Algorithm = "lz4",
            RecompressAlgorithm = level,
            RecompressDictionarySize = dictionary,
            RecompressCpuPercent = cpuPercent,
            CompactThresholdPages = 0, // as the memory benchmark: what writing (and recompressing) leaves
        }, NullLoggerFactory.Instance);

    private static double PerGiB(ZramDevice device, double gib) => device.GetStats().MemUsedTotal / gib / (1 << 20);
}
