using System.Diagnostics.CodeAnalysis;
using ZramDaemon.Device;

namespace ZramDaemon.Control;

/// <summary>
/// A control request: one line of words, the same as the command line after <c>zramd</c>:
/// <c>status</c>, <c>compact [NAME]</c>, <c>set NAME KEY=VALUE</c> (<see cref="DeviceSetting"/>), <c>stats NAME</c>,
/// <c>classes NAME</c>, <c>reset NAME</c>, <c>idle NAME</c>,
/// <c>recompress NAME [type=idle|huge|huge_idle|all] [max_pages=N] [threshold=BYTES]</c>,
/// <c>writeback NAME [type=idle|huge|huge_idle|incompressible|all] [max_pages=N] [page_index=N ...] [page_indexes=LOW-HIGH ...]</c>.
/// Readable and typeable by hand (e.g. with socat).
/// <see cref="Key"/> and <see cref="Value"/> are set's assignment; for recompress and writeback they are the type
/// and max_pages, <see cref="Threshold"/> is recompress's threshold and <see cref="Algorithm"/> its algo= and priority=
/// words as given, <see cref="Pages"/> writeback's page_index= and page_indexes= words as given, space-separated (null
/// when not given).
/// </summary>
public sealed record ControlRequest(string Verb, string? Device, string? Key, string? Value, string? Threshold = null, string? Algorithm = null, string? Pages = null)
{
    public const int MaxLineBytes = 4096;

    public override string ToString() => Verb switch
    {
        "set" => $"set {Device} {Key}={Value}",
        "recompress" or "writeback" => $"{Verb} {Device}{(Key is null ? string.Empty : " type=" + Key)}{(Value is null ? string.Empty : " max_pages=" + Value)}{(Threshold is null ? string.Empty : " threshold=" + Threshold)}{(Algorithm is null ? string.Empty : " " + Algorithm)}{(Pages is null ? string.Empty : " " + Pages)}",
        _ when Device is not null => $"{Verb} {Device}",
        _ => Verb,
    };

    public static bool TryParse(string line, [NotNullWhen(true)] out ControlRequest? request, out string error)
    {
        ArgumentNullException.ThrowIfNull(line);
        request = null;
        error = string.Empty;
        string[] words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (words.Length == 0)
        {
            error = "empty request: send status, compact [NAME], set NAME KEY=VALUE, stats NAME, classes NAME, reset NAME, idle NAME, recompress NAME or writeback NAME";
            return false;
        }

        string verb = words[0];
        switch (verb)
        {
            case "status" when words.Length == 1:
                request = new ControlRequest(verb, null, null, null);
                return true;
            case "compact" when words.Length <= 2:
                request = new ControlRequest(verb, words.Length == 2 ? words[1] : null, null, null);
                return true;
            case "stats" or "classes" or "reset" or "idle" when words.Length == 2:
                request = new ControlRequest(verb, words[1], null, null);
                return true;
            case "set" when words.Length == 3:
                int equals = words[2].IndexOf('=', StringComparison.Ordinal);
                if (equals <= 0)
                {
                    error = $"'{words[2]}' is not an assignment: write set NAME KEY=VALUE ({DeviceSetting.Assignments})";
                    return false;
                }

                request = new ControlRequest(verb, words[1], words[2][..equals], words[2][(equals + 1)..]);
                return true;
            // writeback takes any number of page_index= and page_indexes= (as the kernel's), within MaxLineBytes.
            case "recompress" when words.Length is >= 2 and <= 7:
            case "writeback" when words.Length >= 2:
                return TryParseSlotRun(words, out request, out error);
            case "status" or "compact" or "stats" or "classes" or "reset" or "set" or "idle" or "recompress" or "writeback":
                error = $"wrong arguments for {verb}: {Usage(verb)}";
                return false;
            default:
                error = $"unknown request '{verb}'";
                return false;
        }
    }

    /// <summary>recompress and writeback: NAME, then type= and max_pages= (and for recompress threshold=) in any order,
    /// each at most once.</summary>
    private static bool TryParseSlotRun(string[] words, [NotNullWhen(true)] out ControlRequest? request, out string error)
    {
        request = null;
        error = string.Empty;
        string? type = null;
        string? maxPages = null;
        string? threshold = null;
        string? algorithm = null;
        string? pages = null;
        foreach (string word in words.AsSpan(2))
        {
            if (word.StartsWith("type=", StringComparison.Ordinal) && type is null)
            {
                type = word["type=".Length..];
                // incompressible (huge pages recompression could not shrink) is writeback's only, as the kernel's.
                if (type is not ("idle" or "huge" or "huge_idle" or "all") && (type != "incompressible" || words[0] != "writeback"))
                {
                    error = words[0] == "writeback" ? $"'{word}': the type is idle, huge, huge_idle, incompressible or all" : $"'{word}': the type is idle, huge, huge_idle or all";
                    return false;
                }
            }
            else if (word.StartsWith("max_pages=", StringComparison.Ordinal) && maxPages is null)
            {
                maxPages = word["max_pages=".Length..];
                if (maxPages.Length is 0 or > 18 || !maxPages.All(char.IsAsciiDigit))
                {
                    error = $"'{word}': max_pages is a whole number of pages (0: none, as the kernel's)";
                    return false;
                }
            }
            else if (word.StartsWith("threshold=", StringComparison.Ordinal) && threshold is null && words[0] == "recompress")
            {
                // The kernel's: only objects of at least this many bytes (0: any); below the device's huge class size,
                // which the device's run checks (the kernel's EINVAL).
                threshold = word["threshold=".Length..];
                if (threshold.Length is 0 or > 9 || !threshold.All(char.IsAsciiDigit) || int.Parse(threshold, System.Globalization.CultureInfo.InvariantCulture) >= ZramDevice.PageSize)
                {
                    error = $"'{word}': threshold is a size in bytes below the huge class size, 0 for none (objects smaller are left as they are)";
                    return false;
                }
            }
            else if ((word.StartsWith("algo=", StringComparison.Ordinal) || word.StartsWith("priority=", StringComparison.Ordinal))
                && words[0] == "recompress" && algorithm?.Split(' ').Any(given => given.StartsWith(word[..(word.IndexOf('=', StringComparison.Ordinal) + 1)], StringComparison.Ordinal)) != true)
            {
                // The kernel's choice among its recompression algorithms, by name or priority (each at most once; both
                // may be given); zramd has one, which the device's run checks them against.
                string value = word[(word.IndexOf('=', StringComparison.Ordinal) + 1)..];
                bool priority = word.StartsWith('p');
                if (value.Length is 0 or > 32 || !(priority ? value.Length <= 9 && value.All(char.IsAsciiDigit) : value.All(c => char.IsAsciiLetterOrDigit(c) || c is ':' or '-')))
                {
                    error = $"'{word}': algo= names an algorithm (zstd, lz4hc), priority= is a number";
                    return false;
                }

                algorithm = algorithm is null ? word : algorithm + " " + word;
            }
            else if (word.StartsWith("page_index", StringComparison.Ordinal) && words[0] == "writeback" && TryParsePages(word, out _, out _, out error))
            {
                // The kernel's since 6.16, each any number of times; the device's run checks them against its size.
                pages = pages is null ? word : pages + " " + word;
            }
            else if (error.Length > 0)
            {
                return false;
            }
            else if (word.IndexOf('=', StringComparison.Ordinal) is > 0 and int equals && Usage(words[0]).Contains(" [" + word[..(equals + 1)], StringComparison.Ordinal))
            {
                error = $"'{word}': {word[..equals]} is given twice";
                return false;
            }
            else
            {
                error = $"'{word}' is not a {words[0]} argument: {Usage(words[0])}";
                return false;
            }
        }

        request = new ControlRequest(words[0], words[1], type, maxPages, threshold, algorithm, pages);
        return true;
    }

    /// <summary>
    /// One of writeback's page words: page_index=N (<paramref name="low"/> = <paramref name="high"/> = N) or
    /// page_indexes=LOW-HIGH (inclusive, LOW at most HIGH). False with an empty <paramref name="error"/> when the word
    /// is neither.
    /// </summary>
    public static bool TryParsePages(string word, out long low, out long high, out string error)
    {
        low = high = 0;
        error = string.Empty;
        if (word.StartsWith("page_index=", StringComparison.Ordinal))
        {
            if (!TryParsePage(word.AsSpan("page_index=".Length), out low))
            {
                error = $"'{word}': page_index= is a page number (0 is the device's first 4 KiB)";
                return false;
            }

            high = low;
            return true;
        }

        if (word.StartsWith("page_indexes=", StringComparison.Ordinal))
        {
            ReadOnlySpan<char> value = word.AsSpan("page_indexes=".Length);
            int dash = value.IndexOf('-');
            if (dash < 0 || !TryParsePage(value[..dash], out low) || !TryParsePage(value[(dash + 1)..], out high) || low > high)
            {
                error = $"'{word}': page_indexes= is LOW-HIGH, LOW at most HIGH (page numbers, both written back)";
                return false;
            }

            return true;
        }

        return false;
    }

    private static bool TryParsePage(ReadOnlySpan<char> text, out long page)
    {
        page = 0;
        return text.Length is > 0 and <= 12 && !text.ContainsAnyExcept("0123456789")
            && long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out page);
    }

    private static string Usage(string verb) => verb switch
    {
        "recompress" => "recompress NAME [type=idle|huge|huge_idle|all] [max_pages=N] [threshold=BYTES] [algo=NAME] [priority=1]",
        "writeback" => "writeback NAME [type=idle|huge|huge_idle|incompressible|all] [max_pages=N] [page_index=N ...] [page_indexes=LOW-HIGH ...]",
        "status" => "status takes no arguments",
        "compact" => "compact [NAME]",
        "set" => $"set NAME KEY=VALUE ({DeviceSetting.Assignments})",
        _ => verb + " NAME",
    };
}
