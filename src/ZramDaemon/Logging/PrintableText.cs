using System.Globalization;
using System.Text;

namespace ZramDaemon.Logging;

/// <summary>
/// Text from outside (a configuration value, a path, a control request) made fit for one line of a terminal or the
/// journal: control characters, C1 ones and the line and paragraph separators become \xNN (\u2028), so a value holding
/// an escape sequence cannot recolour or rewrite the terminal that shows its error, nor a newline split one error into
/// two lines. Printable text comes back as it was, so applying it twice changes nothing.
/// </summary>
internal static class PrintableText
{
    public static string Of(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int first = text.AsSpan().IndexOfAnyInRange('\0', '\x1f');
        if (first < 0 && !text.AsSpan().ContainsAnyInRange('\x7f', '\x9f') && !text.AsSpan().ContainsAny('\u2028', '\u2029'))
        {
            return text;
        }

        var printable = new StringBuilder(text.Length + 16);
        foreach (char c in text)
        {
            if (c < 0x20 || (c >= 0x7f && c <= 0x9f))
            {
                printable.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:x2}");
            }
            else if (c is '\u2028' or '\u2029')
            {
                printable.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
            }
            else
            {
                printable.Append(c);
            }
        }

        return printable.ToString();
    }
}
