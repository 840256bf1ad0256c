using System.Globalization;
using System.Text;
using Nbd;
using ZramDaemon.Cli;
using ZramDaemon.Configuration;
using ZramDaemon.Control;
using ZramDaemon.Device;
using ZramDaemon.Device.Recompression;
using ZramDaemon.Device.Writeback;
using ZsAlloc;

namespace ZramDaemon.Hosting;

/// <summary>
/// The running devices by name, and the answers to control requests about them. Connection counts come from
/// the NBD server, so that reset can refuse while a client is attached.
/// </summary>
internal sealed class DeviceRegistry : IControlHandler
{
    /// <summary>Well below the control client's timeout (30 s), so that the reply comes in time even on a loaded machine.</summary>
    private static readonly TimeSpan RunTimeLimit = TimeSpan.FromSeconds(5);

    private readonly IReadOnlyList<ZramDevice> _devices;
    private readonly NbdServer _server;

    public DeviceRegistry(IReadOnlyList<ZramDevice> devices, NbdServer server)
    {
        _devices = devices;
        _server = server;
    }

    public ControlReply Handle(ControlRequest request, CancellationToken stopping)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Verb == "status")
        {
            return ControlReply.Status(_devices.Select(Describe).ToList());
        }

        if (request.Verb == "compact" && request.Device is null)
        {
            return ControlReply.Success(string.Join('\n', _devices.Select(Compact)));
        }

        ZramDevice? device = _devices.FirstOrDefault(d => d.Name == request.Device);
        if (device is null)
        {
            return ControlReply.Failure($"no device '{request.Device}': this daemon has {string.Join(", ", _devices.Select(d => d.Name))}");
        }

        switch (request.Verb)
        {
            case "compact":
                return ControlReply.Success(Compact(device));
            case "stats":
                ZramStats stats = device.GetStats();
                // bd_stat only for a device with a backing file, as the kernel's exists only with CONFIG_ZRAM_WRITEBACK.
                return ControlReply.Success(stats.FormatMmStat() + "\n" + stats.FormatIoStat()
                    + (device.BackingFilePath is null ? string.Empty : "\n" + stats.FormatBdStat()));
            case "classes":
                return ControlReply.Success(FormatClasses(device.GetClassStats()));
            case "set":
                return Set(device, request.Key!, request.Value!);
            case "idle":
                return ControlReply.Success($"{device.Name}: {device.MarkIdle()} pages marked idle");
            case "recompress":
                return Recompress(device, request.Key, request.Value, request.Threshold, request.Algorithm, stopping);
            case "writeback":
                return Writeback(device, request.Key, request.Value, request.Pages, stopping);
            case "reset":
                // Nothing to gain once the daemon stops (everything goes anyway), and a long one would hold the stop.
                if (stopping.IsCancellationRequested)
                {
                    return ControlReply.Failure("zramd is stopping");
                }

                // Claimed, as the kernel's reset_store claims the disk: no client can attach mid-reset and write
                // pages the reset then drops.
                if (!_server.TryClaimExport(device.Name, out int connections))
                {
                    return ControlReply.Failure(connections > 0
                        ? $"{device.Name} has {connections} client(s) connected: reset would destroy their data; disconnect them first (swapoff, umount, nbd-client -d)"
                        : $"{device.Name} is being reset already");
                }

                try
                {
                    device.Reset();
                }
                finally
                {
                    _server.ReleaseClaim(device.Name);
                }

                return ControlReply.Success($"{device.Name}: reset, every page dropped");
            default:
                return ControlReply.Failure($"unknown request '{request.Verb}'");
        }
    }

    public DeviceStatus Describe(ZramDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        ZramStats s = device.GetStats();
        return new DeviceStatus
        {
            Name = device.Name,
            Algorithm = device.Algorithm,
            ReadOnly = device.IsReadOnly,
            DiskSize = device.Size,
            OrigDataSize = s.OrigDataSize,
            ComprDataSize = s.ComprDataSize,
            MemUsedTotal = s.MemUsedTotal,
            MemLimit = s.MemLimit,
            MemUsedMax = s.MemUsedMax,
            SamePages = s.SamePages,
            PagesCompacted = s.PagesCompacted,
            HugePages = s.HugePages,
            HugePagesSince = s.HugePagesSince,
            FailedReads = s.FailedReads,
            FailedWrites = s.FailedWrites,
            InvalidIo = s.InvalidIo,
            NotifyFree = s.NotifyFree,
            DiscardedPages = s.DiscardedPages,
            DeferredFreeDepth = s.DeferredFreeDepth,
            CompactionRuns = s.CompactionRuns,
            CompactionTimeMicroseconds = (long)s.CompactionTime.TotalMicroseconds,
            MetadataBytes = s.MetadataBytes,
            RecompressedPages = s.RecompressedPages,
            RecompressBytesSaved = s.RecompressBytesSaved,
            RecompressDictPages = s.RecompressDictPages,
            RecompressDictBytes = s.RecompressDictBytes,
            DedupPages = s.DedupPages,
            DedupBytesSaved = s.DedupBytesSaved,
            BdCount = s.BdCount,
            BdReads = s.BdReads,
            BdWrites = s.BdWrites,
            WritebackLimit = s.WritebackLimit,
            WritebackToday = s.WritebackToday,
            Connections = _server.GetConnectionCount(device.Name),
        };
    }

    private static string Compact(ZramDevice device)
    {
        long before = device.GetStats().MemUsedTotal;
        long pages = device.Compact();
        long after = device.GetStats().MemUsedTotal;
        return string.Create(CultureInfo.InvariantCulture,
            $"{device.Name}: compacted, {pages} pages freed; mem_used_total {StatusTable.HumanSize(before)} -> {StatusTable.HumanSize(after)}");
    }

    private static ControlReply Recompress(ZramDevice device, string? type, string? maxPages, string? threshold, string? algorithm, CancellationToken stopping)
    {
        if (device.RecompressAlgorithm is not { } own)
        {
            return ControlReply.Failure($"{device.Name} has no recompression algorithm: set recompress-algorithm (e.g. zstd:3) in its section");
        }

        // The kernel's algo= and priority= pick among up to 3 recompression algorithms (EINVAL for none of them; priority
        // 0, the primary, is taken as 1); a zramd device has one, priority 1: its name (zstd) or itself (zstd:3).
        foreach (string word in algorithm?.Split(' ') ?? [])
        {
            bool ours = word.StartsWith("priority=", StringComparison.Ordinal)
                ? int.Parse(word["priority=".Length..], CultureInfo.InvariantCulture) <= 1
                : word == "algo=" + own || word == "algo=" + own.Split(':')[0];
            if (!ours)
            {
                return ControlReply.Failure($"{word}: {device.Name} recompresses with {own} only (its recompress-algorithm, priority 1)");
            }
        }

        int bytes = threshold is null ? 0 : int.Parse(threshold, CultureInfo.InvariantCulture);
        if (bytes >= device.HugeClassSize)
        {
            // The kernel's EINVAL: objects that large are the huge ones, stored raw (type=huge takes them).
            return ControlReply.Failure(string.Create(CultureInfo.InvariantCulture,
                $"threshold={bytes}: must be below {device.Name}'s huge class size, {device.HugeClassSize} bytes (type=huge selects the pages stored raw)"));
        }

        long before = device.GetStats().MemUsedTotal;
        // A long run stops and says so (run it again), so that the client gets its reply in time. An explicit
        // max_pages=0 runs on nothing (the kernel's loop starts with "if (!num_recomp_pages) break;").
        RecompressionResult result = NoPages(maxPages) ? default
            : device.Recompress(Selection(type), MaxPages(maxPages), RunTimeLimit, bytes, stopping);
        long after = device.GetStats().MemUsedTotal;
        return ControlReply.Success(string.Create(CultureInfo.InvariantCulture,
            $"{device.Name}: recompressed {result.Recompressed} of {result.Candidates} candidate pages with {device.RecompressAlgorithm}, {StatusTable.HumanSize(result.BytesSaved)} saved; mem_used_total {StatusTable.HumanSize(before)} -> {StatusTable.HumanSize(after)}{(result.StoppedByMemLimit ? " (stopped: mem_limit reached)" : string.Empty)}{Stopped(result.StoppedByTimeLimit, result.StoppedByStop)}"));
    }

    private static ControlReply Writeback(ZramDevice device, string? type, string? maxPages, string? pageWords, CancellationToken stopping)
    {
        if (device.BackingFilePath is null)
        {
            return ControlReply.Failure($"{device.Name} has no backing file: set writeback-file in its section");
        }

        PageRange[]? pages = null;
        if (pageWords is not null)
        {
            // The kernel's page_index and page_indexes: an index past the device is its ERANGE, and nothing is written.
            string[] words = pageWords.Split(' ');
            pages = new PageRange[words.Length];
            long count = device.Size / ZramDevice.PageSize;
            for (int i = 0; i < words.Length; i++)
            {
                if (!ControlRequest.TryParsePages(words[i], out long low, out long high, out string error))
                {
                    return ControlReply.Failure(error);
                }

                if (high >= count)
                {
                    return ControlReply.Failure(string.Create(CultureInfo.InvariantCulture, $"{words[i]}: {device.Name} has {count} pages (0-{count - 1})"));
                }

                pages[i] = new PageRange((int)low, (int)high + 1);
            }
        }

        long before = device.GetStats().MemUsedTotal;
        WritebackResult result = NoPages(maxPages) ? default
            : device.Writeback(Selection(type), MaxPages(maxPages), RunTimeLimit, stopping, pages);
        long after = device.GetStats().MemUsedTotal;
        string done = string.Create(CultureInfo.InvariantCulture,
            $"{device.Name}: wrote {result.WrittenBack} pages back to {device.BackingFilePath}; mem_used_total {StatusTable.HumanSize(before)} -> {StatusTable.HumanSize(after)}");

        // A failure, as the kernel's write to the writeback file fails (EIO at the limit, ENOSPC when full, the
        // bio's error), so that a script's "|| alert" fires; what was written stays written. A failed write does not
        // stop the run (the kernel's neither), but fails the reply.
        string failed = result.Failed == 0 ? string.Empty
            : string.Create(CultureInfo.InvariantCulture, $"; {result.Failed} writes to the backing file failed (see the log), those pages stay in memory");
        return result.StoppedBy switch
        {
            WritebackOutcome.NoBudget => ControlReply.Failure(done + failed + "; stopped: the daily writeback_limit is used up (zramd set " + device.Name + " writeback_limit=... raises it)"),
            WritebackOutcome.NoRoom => ControlReply.Failure(done + failed + "; stopped: the backing file is full"),
            _ when result.Failed > 0 => ControlReply.Failure(done + failed + Stopped(result.StoppedByTimeLimit, result.StoppedByStop)),
            _ => ControlReply.Success(done + Stopped(result.StoppedByTimeLimit, result.StoppedByStop)),
        };
    }

    /// <summary>What a run that ended before its last slot says, so that a script knows to run it again.</summary>
    private static string Stopped(bool byTimeLimit, bool byStop) =>
        byStop ? " (stopped: zramd is stopping)" : byTimeLimit ? " (stopped after the time limit: run it again to go on)" : string.Empty;

    private static SlotSelection Selection(string? type) => type switch
    {
        "idle" => SlotSelection.Idle,
        "huge" => SlotSelection.Huge,
        "huge_idle" => SlotSelection.HugeIdle,
        "incompressible" => SlotSelection.Incompressible,
        _ => SlotSelection.All,
    };

    /// <summary>The device's max_pages: 0 (no limit) when none was given.</summary>
    private static long MaxPages(string? maxPages) => maxPages is null ? 0 : long.Parse(maxPages, CultureInfo.InvariantCulture);

    /// <summary>An explicit max_pages=0: a run on nothing, as the kernel's recompress (not "no limit").</summary>
    private static bool NoPages(string? maxPages) => maxPages is not null && MaxPages(maxPages) == 0;

    /// <summary>`zramd set NAME KEY=VALUE` on <paramref name="device"/>; a reload applies a changed file this way too.</summary>
    internal static ControlReply Set(ZramDevice device, string key, string value)
    {
        if (!DeviceSetting.TryParse(key, value, out DeviceSetting setting, out string error))
        {
            return ControlReply.Failure(error);
        }

        long bytes = setting.Bytes;
        switch (setting.Key)
        {
            case DeviceSetting.MemLimit:
                bytes = ZramDevice.RoundMemLimit(bytes);
                if (bytes != 0 && bytes < device.MinimumMemLimit)
                {
                    // The old limit stays: this one would refuse every write that is not a same-filled page.
                    return ControlReply.Failure($"mem_limit: {value} ({bytes} bytes) is below {device.Name}'s minimum of {StatusTable.HumanSize(device.MinimumMemLimit)} ({device.MinimumMemLimit} bytes: its slot table, the pool's metadata and what a first stored page takes); 0 means no limit");
                }

                device.SetMemLimit(bytes);
                return ControlReply.Success($"{device.Name}: mem_limit = {Limit(bytes)}"); // whole pages, as in mm_stat
            case DeviceSetting.MemUsedMax:
                device.ResetMemUsedMax();
                return ControlReply.Success($"{device.Name}: mem_used_max = {device.GetStats().MemUsedMax} bytes (the current usage)");
            case DeviceSetting.CompAlgorithm:
                try
                {
                    device.SetAlgorithm(setting.Algorithm!);
                }
                catch (InvalidOperationException e)
                {
                    return ControlReply.Failure($"comp_algorithm: {e.Message}");
                }

                return ControlReply.Success($"{device.Name}: comp_algorithm = {device.Algorithm} for new writes (stored pages keep theirs)");
            default:
                return device.SetWritebackLimit(bytes)
                    ? ControlReply.Success($"{device.Name}: writeback_limit = {Limit(bytes)} a day")
                    : ControlReply.Failure($"writeback_limit: {device.Name} has no writeback-file, so it writes nothing back");
        }

        static string Limit(long bytes) => $"{(bytes == 0 ? "none" : StatusTable.HumanSize(bytes))} ({bytes} bytes)";
    }

    private static string FormatClasses(IReadOnlyList<ZsClassStats> classes)
    {
        var text = new StringBuilder(ZsClassStats.Header);
        foreach (ZsClassStats row in classes)
        {
            text.Append('\n').Append(row);
        }

        // As zs_stats_size_show ends: a blank line, then the totals.
        return text.Append("\n\n").Append(ZsClassStats.FormatTotal(classes)).ToString();
    }
}
