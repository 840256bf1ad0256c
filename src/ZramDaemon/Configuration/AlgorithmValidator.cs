namespace ZramDaemon.Configuration;

/// <summary>Checks an algorithm setting before anything starts.</summary>
internal static class AlgorithmValidator
{
    public static string Validate(string text, Setting setting)
    {
        int colon = text.IndexOf(':', StringComparison.Ordinal);
        string name = (colon < 0 ? text : text[..colon]).ToLowerInvariant();
        string? level = colon < 0 ? null : text[(colon + 1)..];
        if (name is not ("lz4" or "lz4hc" or "zstd") || (level is not null && (level.Length == 0 || !level.All(char.IsAsciiDigit))))
        {
            throw setting.Fail("not a compression algorithm: use lz4, lz4hc[:1-12] or zstd[:1-22]");
        }

        return colon < 0 ? name : name + ":" + level;
    }
}
