namespace ZramDaemon.Device.Recompression;

/// <summary>What happened to one slot offered to the recompressor.</summary>
internal enum RecompressOutcome
{
    /// <summary>Not a candidate (empty, same-filled, already tried, or not of the type asked for).</summary>
    Skipped,

    /// <summary>Stored again with the recompression algorithm, in a smaller size class.</summary>
    Recompressed,

    /// <summary>Would not land in a smaller size class: kept as it was, and marked so it is not tried again.</summary>
    NotSmaller,

    /// <summary>The smaller object could not be allocated within mem_limit (or at all); the slot is unchanged.</summary>
    NoSpace,

    /// <summary>The stored object did not decompress; the slot is left alone (its reads fail with EIO).</summary>
    Corrupt,
}
