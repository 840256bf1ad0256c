using ZramDaemon.Compression;

namespace ZramDaemon.Configuration;

/// <summary>Checks an algorithm setting before anything starts, with the device's own parser.</summary>
internal static class AlgorithmValidator
{
    /// <summary>Returns the canonical form ("lz4", "lz4hc:9", "zstd:3").</summary>
    public static string Validate(string text, Setting setting) =>
        CompressionSpec.TryParse(text, out CompressionSpec spec, out string error) ? spec.ToString() : throw setting.Fail(error);
}
