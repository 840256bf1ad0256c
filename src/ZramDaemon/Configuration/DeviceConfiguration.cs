namespace ZramDaemon.Configuration;

/// <summary>One device as configured: a <c>[zramN]</c> section, or the embedded default <c>zram0</c>.</summary>
public sealed record DeviceConfiguration
{
    public const int DefaultCompactWatermarkPercent = 90;
    public const int DefaultRecompressCpuPercent = 10;
    public const int DefaultWritebackWatermarkPercent = 80;
    public static readonly TimeSpan DefaultRecompressIdleAfter = TimeSpan.FromMinutes(10);

    public required string Name { get; init; }

    /// <summary>Bytes, a multiple of 4096 (rounded up, like zram's disksize).</summary>
    public required long DiskSize { get; init; }

    /// <summary>The canonical algorithm text (e.g. "lz4", "zstd:3").</summary>
    public string Algorithm { get; init; } = "lz4";

    /// <summary>zram's mem_limit in bytes; 0 = no limit.</summary>
    public long MemLimit { get; init; }

    public int CompactWatermarkPercent { get; init; } = DefaultCompactWatermarkPercent;

    /// <summary>Handles the deferred-free queue holds; null (auto, the default): one per block of the device.</summary>
    public int? DeferredFreeCapacity { get; init; }

    public bool ReadOnly { get; init; }

    /// <summary>zram's recomp_algorithm (canonical text, e.g. "zstd:9"), or null: no recompression.</summary>
    public string? RecompressAlgorithm { get; init; }

    /// <summary>Recompress in the background what was not read or written for this long; zero: only on request.</summary>
    public TimeSpan RecompressIdleAfter { get; init; } = DefaultRecompressIdleAfter;

    /// <summary>The background recompressor's share of one CPU, 1-100 percent.</summary>
    public int RecompressCpuPercent { get; init; } = DefaultRecompressCpuPercent;

    /// <summary>Bytes of the zstd dictionary recompression trains from the device's idle pages; 0: none.</summary>
    public int RecompressDictionarySize { get; init; }

    /// <summary>Same-page deduplication (default off).</summary>
    public bool Dedup { get; init; }

    /// <summary>zram's backing_dev, as a file (full path), or null: no writeback.</summary>
    public string? WritebackFile { get; init; }

    /// <summary>Where <see cref="DiskSize"/> came from, for the error only the start can see: a slot table larger
    /// than the memory this process may have.</summary>
    internal Setting? SizeSetting { get; init; }

    /// <summary>Where <see cref="WritebackFile"/> was set, for the error only the start can see: the file in use by
    /// another process.</summary>
    internal Setting? WritebackFileSetting { get; init; }

    /// <summary>Write back in the background past this percentage of the memory limit.</summary>
    public int WritebackWatermarkPercent { get; init; } = DefaultWritebackWatermarkPercent;

    /// <summary>Bytes that may be written to the backing file per day (0: no limit).</summary>
    public long WritebackLimitPerDay { get; init; }

    /// <summary>A kernel nbd device to bind this export to at start (e.g. /dev/nbd0), or null.</summary>
    public string? Attach { get; init; }
}
