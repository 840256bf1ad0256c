namespace ZramDaemon.Device;

/// <summary>How to create a <see cref="ZramDevice"/>; the names follow zram's sysfs attributes.</summary>
public sealed record ZramDeviceOptions
{
    /// <summary>The device (and export) name, e.g. "zram0".</summary>
    public required string Name { get; init; }

    /// <summary>zram's disksize: bytes, a positive multiple of 4096.</summary>
    public required long DiskSize { get; init; }

    /// <summary>zram's comp_algorithm: "lz4" (default), "lz4hc[:LEVEL]", "zstd[:LEVEL]" (<see cref="Compression.CompressionSpec"/>).</summary>
    public string Algorithm { get; init; } = "lz4";

    /// <summary>zram's mem_limit in bytes, applied to mem_used_total; 0 = none.</summary>
    public long MemLimit { get; init; }

    /// <summary>Compact in the background once mem_used_total passes this percentage of <see cref="MemLimit"/> (1-100).</summary>
    public int CompactWatermarkPercent { get; init; } = 90;

    /// <summary>Compact in the background, limit or not, once compaction could free this many pages (0 = never).</summary>
    public long CompactThresholdPages { get; init; } = 1024;

    /// <summary>How often the background compactor looks at the pool when nothing wakes it sooner.</summary>
    public TimeSpan CompactInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Capacity of the pool's deferred-free queue (handles freed off the request path); null (the default):
    /// one per block of the device, at most <see cref="MaxDeferredFreeCapacity"/>, so that a discard of the whole
    /// device fits (the entries are address space, resident only as they are used); 0: every free synchronous.</summary>
    public int? DeferredFreeCapacity { get; init; }

    /// <summary>The largest deferred-free queue: 16 Mi entries, 128 MiB of address space (64 GiB of blocks).</summary>
    public const int MaxDeferredFreeCapacity = 1 << 24;

    public bool ReadOnly { get; init; }

    /// <summary>
    /// zram's recomp_algorithm: the stronger algorithm idle and huge slots are recompressed with ("zstd:3"...), or
    /// null for none (then <see cref="ZramDevice.Recompress"/> refuses and nothing runs in the background).
    /// </summary>
    public string? RecompressAlgorithm { get; init; }

    /// <summary>
    /// Recompress in the background the slots neither read nor written for this long (with
    /// <see cref="RecompressAlgorithm"/>); zero = only on request (<see cref="ZramDevice.Recompress"/>).
    /// </summary>
    public TimeSpan RecompressIdleAfter { get; init; }

    /// <summary>
    /// With a zstd <see cref="RecompressAlgorithm"/>: the size in bytes of a dictionary trained from the device's own idle
    /// pages when recompression first finds enough of them, and used for every page it recompresses; 0 = none.
    /// </summary>
    public int RecompressDictionarySize { get; init; }

    /// <summary>The share of one CPU the background recompressor may use, 1-100 percent.</summary>
    public int RecompressCpuPercent { get; init; } = 10;

    /// <summary>Same-page deduplication: pages with identical content are stored once (off by default: see docs/device.md).</summary>
    public bool Dedup { get; init; }

    /// <summary>zram's backing_dev, as a file: where slots are written back to free memory; null = no writeback.</summary>
    public string? BackingFile { get; init; }

    /// <summary>Write back in the background once mem_used_total passes this percentage of <see cref="MemLimit"/> (1-100).</summary>
    public int WritebackWatermarkPercent { get; init; } = 80;

    /// <summary>Bytes that may be written to <see cref="BackingFile"/> per 24 hours, 4096 per page (0 = no limit).</summary>
    public long WritebackLimitPerDay { get; init; }
}
