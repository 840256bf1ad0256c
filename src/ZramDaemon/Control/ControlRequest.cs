using System.Diagnostics.CodeAnalysis;

namespace ZramDaemon.Control;

/// <summary>
/// A control request: one line of words, the same as the command line after <c>zramd</c>:
/// <c>status</c>, <c>compact [NAME]</c>, <c>set NAME mem_limit=SIZE</c>, <c>stats NAME</c>,
/// <c>classes NAME</c>, <c>reset NAME</c>. Readable and typeable by hand (e.g. with socat).
/// </summary>
public sealed record ControlRequest(string Verb, string? Device, string? Key, string? Value)
{
    public const int MaxLineBytes = 4096;

    public override string ToString() => Verb switch
    {
        "set" => $"set {Device} {Key}={Value}",
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
            error = "empty request: send status, compact [NAME], set NAME mem_limit=SIZE, stats NAME, classes NAME or reset NAME";
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
            case "stats" or "classes" or "reset" when words.Length == 2:
                request = new ControlRequest(verb, words[1], null, null);
                return true;
            case "set" when words.Length == 3:
                int equals = words[2].IndexOf('=', StringComparison.Ordinal);
                if (equals <= 0)
                {
                    error = $"'{words[2]}' is not an assignment: write set NAME mem_limit=SIZE";
                    return false;
                }

                request = new ControlRequest(verb, words[1], words[2][..equals], words[2][(equals + 1)..]);
                return true;
            case "status" or "compact" or "stats" or "classes" or "reset" or "set":
                error = $"wrong arguments for {verb}: {Usage(verb)}";
                return false;
            default:
                error = $"unknown request '{verb}'";
                return false;
        }
    }

    private static string Usage(string verb) => verb switch
    {
        "status" => "status takes no arguments",
        "compact" => "compact [NAME]",
        "set" => "set NAME mem_limit=SIZE",
        _ => verb + " NAME",
    };
}
