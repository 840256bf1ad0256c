using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd;
using Nbd.Devices;
using ZramDaemon.Device;

namespace Zram.Benchmarks.Device;

/// <summary>
/// The memory benchmark of issue 5: store each corpus (scripts/make-corpus.sh) in a fresh device and report
/// mem_used_total per GiB stored. "nbd": nbdcopy writes the corpus over a Unix socket to the device served by
/// our NbdServer (the path a real client takes); "api": the corpus is written through IBlockDevice.Write in
/// 128 KiB requests; "kernel": the same file written to a kernel zram device of our own (hot_add, root only),
/// whose mm_stat is read the same way, so the two are compared on the same data in one run.
/// Usage: Zram.Benchmarks memory [--via nbd|api|kernel|all] [--algorithm lz4] [--dedup] [FILE...]   (default: .cache/corpus/*-512M.bin)
/// </summary>
internal static class DeviceMemoryBenchmark
{
    public static int Run(string[] args)
    {
        string via = "all";
        string algorithm = "lz4";
        bool dedup = false;
        var files = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--via":
                    via = args[++i];
                    break;
                case "--algorithm":
                    algorithm = args[++i];
                    break;
                case "--dedup":
                    dedup = true;
                    break;
                default:
                    files.Add(args[i]);
                    break;
            }
        }

        if (files.Count == 0)
        {
            string dir = Path.Combine(FindRepositoryRoot(), ".cache", "corpus");
            files.AddRange(new[] { "swap-like-512M.bin", "fs-like-512M.bin" }.Select(f => Path.Combine(dir, f)).Where(File.Exists));
            if (files.Count == 0)
            {
                Console.Error.WriteLine($"no corpus in {dir}: run scripts/make-corpus.sh first");
                return 1;
            }
        }

        Console.WriteLine($"{"corpus",-22} {"via",-4} {"alg",-8} {"stored MiB",10} {"orig",8} {"compr",8} {"pool",8} {"meta",6} {"total",8} {"same",7} {"huge",7} {"MiB/GiB",8} {"pool/GiB",8} {"meta/GiB",8} {"true/GiB",8} {"rss+ MiB",8} {"MiB/s",7}");
        foreach (string file in files)
        {
            foreach (string mode in via == "all" ? new[] { "api", "nbd", "kernel" } : new[] { via })
            {
                if (mode == "kernel")
                {
                    MeasureKernel(file, algorithm);
                }
                else
                {
                    Measure(file, mode, algorithm, dedup);
                }
            }
        }

        Console.WriteLine("MiB/GiB = mem_used_total per GiB of corpus: ours counts pool pages + slot table + pool metadata; the kernel's counts pool pages only.");
        Console.WriteLine("pool/GiB = pool pages only (for the kernel: its mem_used_total); meta = our slot table + pool metadata (MiB).");
        Console.WriteLine("rss+ = growth of this process's resident memory while the device was filled (issue 8: within 5% of mem_used_total).");
        Console.WriteLine($"true/GiB = everything the device holds: ours is mem_used_total; the kernel's adds its {KernelSlotBytes}-byte table entry per slot, a {KernelHandleBytes}-byte");
        Console.WriteLine($"  zs_handle per object (stored pages - same pages) and a {KernelZspageBytes}-byte struct zspage per zspage (counted as the growth of its slab cache, approximate).");
        Console.WriteLine("Kernel zram (lz4) measured here on such corpora: 373 MiB/GiB swap-like, 522 MiB/GiB fs-like (pool only).");
        return 0;
    }

    private static void Measure(string file, string via, string algorithm, bool dedup)
    {
        long size = new FileInfo(file).Length;
        long diskSize = (size + 4095) & ~4095L;
        GC.Collect();
        long rssBefore = ResidentBytes();
        using var device = new ZramDevice(new ZramDeviceOptions
        {
            Name = "zram0",
            DiskSize = diskSize,
            Algorithm = algorithm,
            Dedup = dedup,
            CompactThresholdPages = 0, // measure what writing leaves, as the kernel's figure (no compaction)
        }, NullLoggerFactory.Instance);
        var clock = Stopwatch.StartNew();
        if (via == "nbd")
        {
            CopyOverNbd(device, file).GetAwaiter().GetResult();
        }
        else
        {
            WriteThroughApi(device, file);
        }

        clock.Stop();
        ZramStats s = device.GetStats();
        long rssGrowth = ResidentBytes() - rssBefore;
        long poolBytes = s.MemUsedTotal - s.MetadataBytes;
        double gib = size / (double)(1L << 30);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{Path.GetFileName(file),-22} {via,-4} {device.Algorithm,-8} {size >> 20,10} {s.OrigDataSize >> 20,8} {s.ComprDataSize >> 20,8} {poolBytes >> 20,8} {s.MetadataBytes / (double)(1 << 20),6:F2} {s.MemUsedTotal >> 20,8} {s.SamePages,7} {s.HugePages,7} {s.MemUsedTotal / gib / (1 << 20),8:F1} {poolBytes / gib / (1 << 20),8:F1} {s.MetadataBytes / gib / (1 << 20),8:F2} {s.MemUsedTotal / gib / (1 << 20),8:F1} {rssGrowth / (double)(1 << 20),8:F1} {(size >> 20) / clock.Elapsed.TotalSeconds,7:F0}{(dedup ? $" dedup_pages={s.DedupPages}" : string.Empty)}"));
    }

    /// <summary>The kernel's zram on the same file: a device of our own from /sys/class/zram-control, removed after.</summary>
    private static void MeasureKernel(string file, string algorithm)
    {
        const string control = "/sys/class/zram-control";
        if (!Directory.Exists(control) || Environment.UserName != "root")
        {
            Console.WriteLine($"{Path.GetFileName(file),-22} kernel: skipped (needs root and the zram module)");
            return;
        }

        long size = new FileInfo(file).Length;
        int id = int.Parse(File.ReadAllText($"{control}/hot_add").Trim(), CultureInfo.InvariantCulture);
        string sys = $"/sys/block/zram{id}";
        try
        {
            File.WriteAllText($"{sys}/comp_algorithm", algorithm.Split(':')[0]);
            File.WriteAllText($"{sys}/disksize", ((size + 4095) & ~4095L).ToString(CultureInfo.InvariantCulture));
            long slabBefore = SlabObjects($"zspage-zram{id}");
            var clock = Stopwatch.StartNew();
            using (FileStream input = File.OpenRead(file))
            using (var output = new FileStream($"/dev/zram{id}", FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1 << 20))
            {
                input.CopyTo(output, 1 << 20);
                output.Flush(flushToDisk: true);
            }

            clock.Stop();
            long[] mm = File.ReadAllText($"{sys}/mm_stat").Split(' ', StringSplitOptions.RemoveEmptyEntries)
                .Select(f => long.Parse(f, CultureInfo.InvariantCulture)).ToArray();
            double gib = size / (double)(1L << 30);
            long zspages = Math.Max(0, SlabObjects($"zspage-zram{id}") - slabBefore);
            long slots = (size + 4095) >> 12;
            long objects = (mm[0] >> 12) - mm[5];
            long metadata = (slots * KernelSlotBytes) + (objects * KernelHandleBytes) + (zspages * KernelZspageBytes);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{Path.GetFileName(file),-22} {"kern",-4} {File.ReadAllText($"{sys}/comp_algorithm").Split('[', ']')[1],-8} {size >> 20,10} {mm[0] >> 20,8} {mm[1] >> 20,8} {mm[2] >> 20,8} {metadata / (double)(1 << 20),6:F2} {mm[2] >> 20,8} {mm[5],7} {mm[7],7} {mm[2] / gib / (1 << 20),8:F1} {mm[2] / gib / (1 << 20),8:F1} {metadata / gib / (1 << 20),8:F2} {(mm[2] + metadata) / gib / (1 << 20),8:F1} {"",8} {(size >> 20) / clock.Elapsed.TotalSeconds,7:F0}"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{string.Empty,-22} kernel metadata not in its mm_stat: {slots} slots x {KernelSlotBytes} + {objects} objects x {KernelHandleBytes} + {zspages} zspages x {KernelZspageBytes} (slab growth)"));
        }
        finally
        {
            File.WriteAllText($"{sys}/reset", "1");
            File.WriteAllText($"{control}/hot_remove", id.ToString(CultureInfo.InvariantCulture));
        }
    }

    /// <summary>This process's resident set (/proc/self/statm), in bytes.</summary>
    private static long ResidentBytes() =>
        long.Parse(File.ReadAllText("/proc/self/statm").Split(' ')[1], CultureInfo.InvariantCulture) * Environment.SystemPageSize;

    /// <summary>The kernel's struct zram_table_entry (handle, flags; 64-bit, no lockdep).</summary>
    private const int KernelSlotBytes = 16;

    /// <summary>zsmalloc's handle, one per object, from its zs_handle slab cache.</summary>
    private const int KernelHandleBytes = 8;

    /// <summary>struct zspage, from its zspage slab cache (object_size in /sys/kernel/slab on this kernel).</summary>
    private const int KernelZspageBytes = 56;

    /// <summary>Objects of a slab cache now (SLUB's /sys/kernel/slab/NAME/objects; merged caches count their neighbours too), 0 if unknown.</summary>
    private static long SlabObjects(string cache)
    {
        try
        {
            string text = File.ReadAllText($"/sys/kernel/slab/{cache}/objects");
            return long.Parse(text.Split(' ', 2)[0].Trim(), CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return 0;
        }
        catch (UnauthorizedAccessException)
        {
            return 0;
        }
    }

    internal static void WriteThroughApi(ZramDevice device, string file)
    {
        using FileStream input = File.OpenRead(file);
        var buffer = new byte[128 << 10];
        long offset = 0;
        int n;
        while ((n = input.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false)) > 0)
        {
            int length = (n + 4095) & ~4095;
            buffer.AsSpan(n, length - n).Clear();
            NbdError error = device.Write(offset, buffer.AsSpan(0, length), fua: false);
            if (error != NbdError.None)
            {
                throw new IOException($"write at {offset} failed: {error}");
            }

            offset += n;
        }
    }

    private static async Task CopyOverNbd(ZramDevice device, string file)
    {
        string dir = Path.Combine(Path.GetTempPath(), "zramd-bench-" + Environment.ProcessId);
        Directory.CreateDirectory(dir);
        string socket = Path.Combine(dir, "nbd.sock");
        await using var server = new NbdServer(new NbdServerOptions(), NullLoggerFactory.Instance);
        server.AddExport(new NbdExport(device.Name, "memory benchmark", device));
        using var cancel = new CancellationTokenSource();
        using NbdListener listener = NbdListener.BindUnix(socket);
        Task serving = server.ServeAsync(listener, cancel.Token);
        try
        {
            using var nbdcopy = Process.Start(new ProcessStartInfo("nbdcopy", [file, $"nbd+unix:///{device.Name}?socket={socket}"])
            {
                RedirectStandardError = true,
            }) ?? throw new InvalidOperationException("nbdcopy did not start (apt install libnbd-bin)");
            string errors = await nbdcopy.StandardError.ReadToEndAsync();
            await nbdcopy.WaitForExitAsync();
            if (nbdcopy.ExitCode != 0)
            {
                throw new IOException($"nbdcopy failed ({nbdcopy.ExitCode}): {errors}");
            }
        }
        finally
        {
            await cancel.CancelAsync();
            await server.StopAsync(TimeSpan.FromSeconds(2));
            await serving;
            Directory.Delete(dir, recursive: true);
        }
    }

    internal static string FindRepositoryRoot()
    {
        for (string? dir = AppContext.BaseDirectory; dir != null; dir = Path.GetDirectoryName(dir))
        {
            if (File.Exists(Path.Combine(dir, "Zram.sln")))
            {
                return dir;
            }
        }

        return Directory.GetCurrentDirectory();
    }
}
