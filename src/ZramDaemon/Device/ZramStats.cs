using System.Globalization;

namespace ZramDaemon.Device;

/// <summary>
/// A device's counters, named as the kernel's /sys/block/zramN/mm_stat and io_stat fields, plus what the
/// kernel does not report. Sizes are bytes. Differences from the kernel: <see cref="MemUsedTotal"/> and
/// <see cref="MemUsedMax"/> count the device's own metadata (slot table and pool metadata) on top of the pool
/// pages, and <see cref="MemLimit"/> applies to that total.
/// </summary>
public sealed record ZramStats
{
    /// <summary>Every stored slot x 4096, same-filled ones included (the kernel's pages_stored).</summary>
    public long OrigDataSize { get; init; }

    /// <summary>Bytes of the stored objects (compressed sizes; 4096 for each huge page; nothing for same-filled).</summary>
    public long ComprDataSize { get; init; }

    /// <summary>Pool pages x 4096 + the slot table + the pool's metadata (handles, zspage descriptors, queues).</summary>
    public long MemUsedTotal { get; init; }

    public long MemLimit { get; init; }

    /// <summary>The highest <see cref="MemUsedTotal"/> since creation or the last reset (<c>set mem_used_max=0</c>), as noted
    /// at each new peak of the pool's pages, at each allocation under a limit and each word stored, and at each read of
    /// the stats; never below a total already reported.</summary>
    public long MemUsedMax { get; init; }

    /// <summary>Slots holding one repeated 8-byte value (no pool object: nothing for zeros, an 8-byte pool word otherwise).</summary>
    public long SamePages { get; init; }

    /// <summary>Pages compaction has given back to the OS.</summary>
    public long PagesCompacted { get; init; }

    /// <summary>Slots stored raw because they did not compress below the pool's huge class size.</summary>
    public long HugePages { get; init; }

    /// <summary>Huge pages stored since creation (does not go down when they are freed).</summary>
    public long HugePagesSince { get; init; }

    public long FailedReads { get; init; }

    public long FailedWrites { get; init; }

    /// <summary>Requests refused for their range (out of bounds).</summary>
    public long InvalidIo { get; init; }

    /// <summary>Pages discarded by TRIM (the kernel counts discards and swap-slot frees here).</summary>
    public long NotifyFree { get; init; }

    /// <summary>Slots that held data and were freed by TRIM or WRITE_ZEROES.</summary>
    public long DiscardedPages { get; init; }

    /// <summary>Handles waiting in the pool's deferred-free queue.</summary>
    public long DeferredFreeDepth { get; init; }

    /// <summary>Compactions run by the device (manual, automatic, and on reaching the memory limit).</summary>
    public long CompactionRuns { get; init; }

    public TimeSpan CompactionTime { get; init; }

    /// <summary>The slot table plus the pool's metadata: the part of <see cref="MemUsedTotal"/> that is not pool pages.</summary>
    public long MetadataBytes { get; init; }

    /// <summary>Slots the recompressor stored again, smaller, with the recompression algorithm (since creation).</summary>
    public long RecompressedPages { get; init; }

    /// <summary>Compressed bytes those recompressions saved: old object sizes minus new (since creation).</summary>
    public long RecompressBytesSaved { get; init; }

    /// <summary>Slots stored with the device's trained zstd dictionary (in the pool or the backing file).</summary>
    public long RecompressDictPages { get; init; }

    /// <summary>Memory the dictionary holds (counted in <see cref="MetadataBytes"/> and mem_used_total); 0 without one.</summary>
    public long RecompressDictBytes { get; init; }

    /// <summary>Slots that share another slot's object instead of storing their own (deduplication).</summary>
    public long DedupPages { get; init; }

    /// <summary>Compressed bytes those slots did not store.</summary>
    public long DedupBytesSaved { get; init; }

    /// <summary>zram's bd_count: pages written back and held in the backing file now.</summary>
    public long BdCount { get; init; }

    /// <summary>zram's bd_reads: pages read back from the backing file.</summary>
    public long BdReads { get; init; }

    /// <summary>zram's bd_writes: pages written to the backing file.</summary>
    public long BdWrites { get; init; }

    /// <summary>The backing file's daily writeback limit in bytes (writeback-limit; 0: none).</summary>
    public long WritebackLimit { get; init; }

    /// <summary>Bytes written to the backing file in the current 24 hours, what <see cref="WritebackLimit"/> counts.</summary>
    public long WritebackToday { get; init; }

    /// <summary>The line of /sys/block/zramN/bd_stat (without its newline), in the kernel's format (pages).</summary>
    public string FormatBdStat() => string.Join(' ', new[] { BdCount, BdReads, BdWrites }.Select(Field));

    /// <summary>The line of /sys/block/zramN/mm_stat (without its newline), in the kernel's format.</summary>
    public string FormatMmStat() => string.Join(' ', new[]
    {
        OrigDataSize, ComprDataSize, MemUsedTotal, MemLimit, MemUsedMax, SamePages, PagesCompacted, HugePages, HugePagesSince,
    }.Select(Field));

    /// <summary>The line of /sys/block/zramN/io_stat (without its newline), in the kernel's format since Linux 6.4:
    /// <c>"%8llu %8llu 0 %8llu"</c>, invalid_io a literal, unpadded 0 (the kernel dropped the counter; zramd's own is in
    /// <c>status --json</c>), so that the line is the kernel's byte for byte and notify_free sits in the same columns.</summary>
    public string FormatIoStat() => $"{Field(FailedReads)} {Field(FailedWrites)} 0 {Field(NotifyFree)}";

    // The kernel prints each field as "%8llu": right-aligned in eight columns, wider when it must be.
    private static string Field(long value) => value.ToString(CultureInfo.InvariantCulture).PadLeft(8);
}
