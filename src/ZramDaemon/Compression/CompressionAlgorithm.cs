namespace ZramDaemon.Compression;

/// <summary>
/// The compressors zramd offers. The numeric values are recorded in each slot (two bits), so that a page
/// stays readable whatever the device compresses with later: never renumber them.
/// </summary>
public enum CompressionAlgorithm : byte
{
    Lz4 = 0,
    Lz4Hc = 1,
    Zstd = 2,
}
