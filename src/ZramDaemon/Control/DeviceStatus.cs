namespace ZramDaemon.Control;

/// <summary>
/// One device's state as the control protocol carries it. Counters use the kernel's names (mm_stat, io_stat in
/// Documentation/admin-guide/blockdev/zram.rst) so zram users read them at once; the ones after io_stat's are zramd's own.
/// </summary>
public sealed class DeviceStatus
{
    /// <summary>Every counter: its JSON name and how to get and set it. The order is mm_stat's, then io_stat's,
    /// then zramd's, and is the order of <c>zramd status --json</c>.</summary>
    public static readonly IReadOnlyList<(string Name, Func<DeviceStatus, long> Get, Action<DeviceStatus, long> Set)> Counters =
    [
        ("disksize", s => s.DiskSize, (s, v) => s.DiskSize = v),
        ("orig_data_size", s => s.OrigDataSize, (s, v) => s.OrigDataSize = v),
        ("compr_data_size", s => s.ComprDataSize, (s, v) => s.ComprDataSize = v),
        ("mem_used_total", s => s.MemUsedTotal, (s, v) => s.MemUsedTotal = v),
        ("mem_limit", s => s.MemLimit, (s, v) => s.MemLimit = v),
        ("mem_used_max", s => s.MemUsedMax, (s, v) => s.MemUsedMax = v),
        ("same_pages", s => s.SamePages, (s, v) => s.SamePages = v),
        ("pages_compacted", s => s.PagesCompacted, (s, v) => s.PagesCompacted = v),
        ("huge_pages", s => s.HugePages, (s, v) => s.HugePages = v),
        ("huge_pages_since", s => s.HugePagesSince, (s, v) => s.HugePagesSince = v),
        ("failed_reads", s => s.FailedReads, (s, v) => s.FailedReads = v),
        ("failed_writes", s => s.FailedWrites, (s, v) => s.FailedWrites = v),
        ("invalid_io", s => s.InvalidIo, (s, v) => s.InvalidIo = v),
        ("notify_free", s => s.NotifyFree, (s, v) => s.NotifyFree = v),
        ("discarded_pages", s => s.DiscardedPages, (s, v) => s.DiscardedPages = v),
        ("deferred_free_depth", s => s.DeferredFreeDepth, (s, v) => s.DeferredFreeDepth = v),
        ("compaction_runs", s => s.CompactionRuns, (s, v) => s.CompactionRuns = v),
        ("compaction_time_us", s => s.CompactionTimeMicroseconds, (s, v) => s.CompactionTimeMicroseconds = v),
        ("metadata_bytes", s => s.MetadataBytes, (s, v) => s.MetadataBytes = v),
        ("recompressed_pages", s => s.RecompressedPages, (s, v) => s.RecompressedPages = v),
        ("recompress_bytes_saved", s => s.RecompressBytesSaved, (s, v) => s.RecompressBytesSaved = v),
        ("recompress_dict_pages", s => s.RecompressDictPages, (s, v) => s.RecompressDictPages = v),
        ("recompress_dict_bytes", s => s.RecompressDictBytes, (s, v) => s.RecompressDictBytes = v),
        ("dedup_pages", s => s.DedupPages, (s, v) => s.DedupPages = v),
        ("dedup_bytes_saved", s => s.DedupBytesSaved, (s, v) => s.DedupBytesSaved = v),
        ("bd_count", s => s.BdCount, (s, v) => s.BdCount = v),
        ("bd_reads", s => s.BdReads, (s, v) => s.BdReads = v),
        ("bd_writes", s => s.BdWrites, (s, v) => s.BdWrites = v),
        ("writeback_limit", s => s.WritebackLimit, (s, v) => s.WritebackLimit = v),
        ("writeback_today", s => s.WritebackToday, (s, v) => s.WritebackToday = v),
        ("connections", s => s.Connections, (s, v) => s.Connections = v),
    ];

    public string Name { get; set; } = string.Empty;

    public string Algorithm { get; set; } = string.Empty;

    public bool ReadOnly { get; set; }

    public long DiskSize { get; set; }

    public long OrigDataSize { get; set; }

    public long ComprDataSize { get; set; }

    public long MemUsedTotal { get; set; }

    public long MemLimit { get; set; }

    public long MemUsedMax { get; set; }

    public long SamePages { get; set; }

    public long PagesCompacted { get; set; }

    public long HugePages { get; set; }

    public long HugePagesSince { get; set; }

    public long FailedReads { get; set; }

    public long FailedWrites { get; set; }

    public long InvalidIo { get; set; }

    public long NotifyFree { get; set; }

    public long DiscardedPages { get; set; }

    public long DeferredFreeDepth { get; set; }

    public long CompactionRuns { get; set; }

    public long CompactionTimeMicroseconds { get; set; }

    public long MetadataBytes { get; set; }

    public long RecompressedPages { get; set; }

    public long RecompressBytesSaved { get; set; }

    public long RecompressDictPages { get; set; }

    public long RecompressDictBytes { get; set; }

    public long DedupPages { get; set; }

    public long DedupBytesSaved { get; set; }

    /// <summary>zram's bd_stat (pages): held in the backing file now, read back from it, written to it.</summary>
    public long BdCount { get; set; }

    public long BdReads { get; set; }

    public long BdWrites { get; set; }

    /// <summary>The daily writeback limit in bytes (0: none) and the bytes written back in the current 24 hours.</summary>
    public long WritebackLimit { get; set; }

    public long WritebackToday { get; set; }

    /// <summary>NBD clients connected to this export now.</summary>
    public long Connections { get; set; }
}
