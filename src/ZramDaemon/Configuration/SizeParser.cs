using System.Globalization;

namespace ZramDaemon.Configuration;

/// <summary>
/// Parses sizes the way zram's disksize and mem_limit attributes do (memparse): a number with an optional
/// K, M, G or T suffix in powers of 1024; a plain number is bytes.
/// </summary>
public static class SizeParser
{
    public static bool TryParse(string? text, out long bytes, out string error)
    {
        bytes = 0;
        error = string.Empty;
        if (string.IsNullOrWhiteSpace(text))
        {
            error = "a size is required (e.g. 512M, 4G)";
            return false;
        }

        string s = text.Trim();
        int shift = char.ToUpperInvariant(s[^1]) switch
        {
            'K' => 10,
            'M' => 20,
            'G' => 30,
            'T' => 40,
            _ => 0,
        };
        if (shift != 0)
        {
            s = s[..^1];
        }

        if (!long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out long value))
        {
            error = $"'{text}' is not a size: use a whole number with an optional K, M, G or T suffix";
            return false;
        }

        if (value > (long.MaxValue >> shift))
        {
            error = $"'{text}' is too large";
            return false;
        }

        bytes = value << shift;
        return true;
    }
}
