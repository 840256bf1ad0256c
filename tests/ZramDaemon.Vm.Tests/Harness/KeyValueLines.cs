namespace ZramDaemon.Vm.Tests.Harness;

/// <summary>Reads "PREFIXkey=value" lines out of a text stream (later lines win), ignoring everything else.</summary>
public static class KeyValueLines
{
    public static Dictionary<string, string> Parse(string text, string prefix)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string raw in text.Split('\n'))
        {
            string line = raw.TrimEnd('\r');
            // The console may put terminal escapes before the guest's first line, so look for the prefix anywhere.
            int start = prefix.Length == 0 ? 0 : line.IndexOf(prefix, StringComparison.Ordinal);
            if (start < 0)
            {
                continue;
            }

            string pair = line[(start + prefix.Length)..];
            int equals = pair.IndexOf('=', StringComparison.Ordinal);
            if (equals > 0)
            {
                values[pair[..equals].Trim()] = pair[(equals + 1)..].Trim();
            }
        }

        return values;
    }
}
