using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.RegularExpressions;
using ZramDaemon.Compression.Native;

namespace ZramDaemon.Compression;

/// <summary>
/// An algorithm and its level, written as zram's comp_algorithm plus its "level" parameter:
/// "lz4" (or "lz4:ACCELERATION"), "lz4hc" / "lz4hc:LEVEL" (1-12, default 9), "zstd" / "zstd:LEVEL" (1-22, default 3).
/// For lz4 the level is LZ4's acceleration, as in the kernel's backend_lz4.c (1 = default, higher = faster, larger).
/// zram-generator's spelling, "zstd(level=3)" or "zstd()", is taken too, in the configuration and in <c>zramd set</c> alike.
/// </summary>
public readonly partial record struct CompressionSpec(CompressionAlgorithm Algorithm, int Level)
{
    public const string Usage = "use lz4, lz4hc[:1-12] or zstd[:1-22]";

    public static CompressionSpec Default => DefaultFor(CompressionAlgorithm.Lz4);

    /// <summary>The algorithm at its default level (lz4: acceleration 1, lz4hc: 9, zstd: 3, as the kernel's backends).</summary>
    public static CompressionSpec DefaultFor(CompressionAlgorithm algorithm) => new(algorithm, algorithm switch
    {
        CompressionAlgorithm.Lz4 => Interop.Lz4.MinAcceleration,
        CompressionAlgorithm.Lz4Hc => Interop.Lz4.HcDefaultLevel,
        CompressionAlgorithm.Zstd => Interop.Zstd.DefaultLevel,
        _ => throw new ArgumentOutOfRangeException(nameof(algorithm), algorithm, "unknown compression algorithm"),
    });

    public static CompressionSpec Parse(string text)
    {
        if (!TryParse(text, out CompressionSpec spec, out string error))
        {
            throw new FormatException(error);
        }

        return spec;
    }

    public static bool TryParse([NotNullWhen(true)] string? text, out CompressionSpec spec, out string error)
    {
        spec = default;
        error = string.Empty;
        if (string.IsNullOrWhiteSpace(text))
        {
            error = $"a compression algorithm is required: {Usage}";
            return false;
        }

        if (GeneratorForm().Match(text.Trim()) is { Success: true } generator)
        {
            text = generator.Groups["name"].Value + (generator.Groups["level"].Success ? ":" + generator.Groups["level"].Value : string.Empty);
        }

        ReadOnlySpan<char> s = text.AsSpan().Trim();
        int colon = s.IndexOf(':');
        ReadOnlySpan<char> name = colon < 0 ? s : s[..colon];
        (CompressionAlgorithm algorithm, int min, int max) limits;
        if (name.Equals("lz4", StringComparison.OrdinalIgnoreCase))
        {
            limits = (CompressionAlgorithm.Lz4, Interop.Lz4.MinAcceleration, Interop.Lz4.MaxAcceleration);
        }
        else if (name.Equals("lz4hc", StringComparison.OrdinalIgnoreCase))
        {
            limits = (CompressionAlgorithm.Lz4Hc, Interop.Lz4.HcMinLevel, Interop.Lz4.HcMaxLevel);
        }
        else if (name.Equals("zstd", StringComparison.OrdinalIgnoreCase))
        {
            limits = (CompressionAlgorithm.Zstd, Interop.Zstd.MinLevel, Interop.Zstd.MaxLevel);
        }
        else
        {
            error = $"'{text}' is not a compression algorithm: {Usage}";
            return false;
        }

        int level = DefaultFor(limits.algorithm).Level;
        if (colon >= 0)
        {
            if (!int.TryParse(s[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out level)
                || level < limits.min || level > limits.max)
            {
                error = $"'{text}': the level of {name.ToString().ToLowerInvariant()} must be a whole number from {limits.min} to {limits.max}";
                return false;
            }
        }

        spec = new CompressionSpec(limits.algorithm, level);
        return true;
    }

    /// <summary>The canonical form, which <see cref="Parse"/> reads back: "lz4", "lz4:8", "lz4hc:9", "zstd:3".</summary>
    public override string ToString() => Algorithm switch
    {
        CompressionAlgorithm.Lz4 when Level == Interop.Lz4.MinAcceleration => "lz4",
        CompressionAlgorithm.Lz4 => string.Create(CultureInfo.InvariantCulture, $"lz4:{Level}"),
        CompressionAlgorithm.Lz4Hc => string.Create(CultureInfo.InvariantCulture, $"lz4hc:{Level}"),
        _ => string.Create(CultureInfo.InvariantCulture, $"zstd:{Level}"),
    };

    [GeneratedRegex(@"^(?<name>[A-Za-z0-9-]+)\((?:level=(?<level>[0-9]+))?\)$")]
    private static partial Regex GeneratorForm();
}
