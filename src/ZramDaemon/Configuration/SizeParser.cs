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
            // Digits that do not fit a long are a size all the same, one too large.
            error = s.Length > 0 && s.All(char.IsAsciiDigit)
                ? $"'{text}' is too large"
                : $"'{text}' is not a size: use a whole number with an optional K, M, G or T suffix";
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

    /// <summary>
    /// <paramref name="bytes"/> as a size <see cref="TryParse"/> reads back as the same value: the largest of T, G, M and
    /// K that divides it, else plain bytes. For echoing a configuration (the startup report), where a rounded figure
    /// ("4.9K" for a max-payload of 5000) says something other than what runs.
    /// </summary>
    public static string Format(long bytes)
    {
        ReadOnlySpan<(int Shift, char Suffix)> units = [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')];
        foreach ((int shift, char suffix) in units)
        {
            if (bytes != 0 && (bytes & ((1L << shift) - 1)) == 0)
            {
                return (bytes >> shift).ToString(CultureInfo.InvariantCulture) + suffix;
            }
        }

        return bytes.ToString(CultureInfo.InvariantCulture);
    }
}
