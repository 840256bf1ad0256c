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

    /// <summary>
    /// zstd with the device's dictionary (<see cref="ZstdDictionary"/>, trained from its own idle pages): written only by
    /// the recompressor, read with that dictionary. Each page is one zstd compressed block without a frame (no magic
    /// number, frame header or block header). Dictionaries live as long as the process (the backing file too), so no
    /// older encoding of this id can be met.
    /// </summary>
    ZstdDictionary = 3,
}
