using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace Zram.Benchmarks.Device;

/// <summary>
/// Issue 8's trim figure without the socket: store the corpus in a device, trim half of its blocks at random in
/// extents of the given size through IBlockDevice.Trim on several threads (as the NBD server's threads would),
/// and time only the trims, with the deferred-free queue (the default capacity) and without it (capacity 0:
/// every free synchronous), alternating in one run. Over NBD (scripts/bench/compare.sh) the same trims take
/// fio's round trips as well, which hide the frees.
/// After the trims, the frees still queued are flushed and timed too ("flush ms"): the work the queue moved off the
/// requests. --queue N sets the capacity of the "on" runs (default the daemon's), e.g. large enough to hold every
/// trimmed handle, to see what a deferred free costs on the request path alone.
/// Usage: Zram.Benchmarks trim [--rounds N] [--extent-kib K] [--threads T] [--queue N] [FILE]   (default: the swap-like corpus)
/// </summary>
internal static class TrimBenchmark
{
    public static int Run(string[] args)
    {
        int rounds = 5;
        int extentKiB = 256;
        int threads = 4;
        int? queue = null; // the daemon's default (README)
        string? file = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--rounds": rounds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--extent-kib": extentKiB = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--threads": threads = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--queue": queue = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                default: file = args[i]; break;
            }
        }

        file ??= Path.Combine(DeviceMemoryBenchmark.FindRepositoryRoot(), ".cache", "corpus", "swap-like-512M.bin");
        long size = new FileInfo(file).Length & ~4095L;
        long extent = extentKiB * 1024L;
        long extents = size / extent;

        // Half of the extents, in a random order that every run shares.
        var random = new Random(1);
        long[] order = Enumerable.Range(0, (int)extents).Select(e => e * extent).OrderBy(_ => random.Next()).Take((int)(extents / 2)).ToArray();

        Console.WriteLine($"trimming {order.Length} random {extentKiB} KiB extents (half of {size >> 20} MiB) on {threads} threads, {rounds} rounds, queue {queue?.ToString(CultureInfo.InvariantCulture) ?? "auto"} when on");
        Console.WriteLine($"{"round",5} {"queue",6} {"trim ms",9} {"us/extent",10} {"ns/slot",8} {"queued at end",14} {"flush ms",9}");
        var times = new Dictionary<bool, List<double>> { [true] = [], [false] = [] };
        for (int round = 1; round <= rounds; round++)
        {
            foreach (bool deferred in new[] { true, false })
            {
                using var device = new ZramDevice(new ZramDeviceOptions
                {
                    Name = "zram0",
                    DiskSize = size,
                    Algorithm = "lz4",
                    DeferredFreeCapacity = deferred ? queue : 0,
                }, NullLoggerFactory.Instance);
                DeviceMemoryBenchmark.WriteThroughApi(device, file);
                GC.Collect();

                int next = -1;
                var workers = new Thread[threads];
                var start = new Barrier(threads + 1);
                for (int t = 0; t < threads; t++)
                {
                    workers[t] = new Thread(() =>
                    {
                        start.SignalAndWait();
                        int i;
                        while ((i = Interlocked.Increment(ref next)) < order.Length)
                        {
                            if (device.Trim(order[i], extent) != NbdError.None)
                            {
                                throw new IOException($"trim at {order[i]} failed");
                            }
                        }
                    });
                    workers[t].Start();
                }

                start.SignalAndWait();
                long begin = Stopwatch.GetTimestamp();
                foreach (Thread worker in workers)
                {
                    worker.Join();
                }

                double ms = Stopwatch.GetElapsedTime(begin).TotalMilliseconds;
                long queued = device.GetStats().DeferredFreeDepth;
                long flushBegin = Stopwatch.GetTimestamp();
                device.FlushDeferredFrees();
                double flushMs = Stopwatch.GetElapsedTime(flushBegin).TotalMilliseconds;
                times[deferred].Add(ms);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{round,5} {(deferred ? "on" : "off"),6} {ms,9:F1} {ms * 1000 / order.Length,10:F1} {ms * 1e6 / (order.Length * (extent / 4096)),8:F0} {queued,14} {flushMs,9:F1}"));
            }
        }

        double on = Median(times[true]);
        double off = Median(times[false]);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"median: queue on {on:F1} ms (min {times[true].Min():F1}, max {times[true].Max():F1}), off {off:F1} ms (min {times[false].Min():F1}, max {times[false].Max():F1}); off / on = {off / on:F2}x"));
        return 0;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }
}
