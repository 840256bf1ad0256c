namespace ZramDaemon.Configuration;

/// <summary>One <c>key = value</c> line of an INI file, with where it came from for error messages.</summary>
public sealed record IniEntry(string Section, string Key, string Value, int Line);

/// <summary>
/// The INI dialect of zram-generator.conf and systemd (systemd.syntax(5)): <c>[section]</c> headers,
/// <c>key = value</c> lines, comments starting with # or ;. Keys before any section, lines without '=',
/// and malformed headers are errors. Entries keep their order; a later duplicate overrides an earlier one
/// when read through <see cref="ConfigurationLoader"/>.
/// Unlike systemd, a # or ; after whitespace also starts a comment (<c>control = /run/zramd/zramd.ctl  # ...</c>,
/// as README's example writes them): otherwise the comment would silently become part of a path. No key's syntax
/// has whitespace before a # or ;; only a path could (control, tls-certificate, tls-key, writeback-file), and such
/// a path cannot be written here.
/// </summary>
public sealed class IniFile
{
    private readonly IReadOnlyList<int> _sectionLines;

    private IniFile(string path, IReadOnlyList<string> sections, IReadOnlyList<int> sectionLines, IReadOnlyList<IniEntry> entries)
    {
        Path = path;
        Sections = sections;
        _sectionLines = sectionLines;
        Entries = entries;
    }

    public string Path { get; }

    /// <summary>Section names in the order they first appear.</summary>
    public IReadOnlyList<string> Sections { get; }

    public IReadOnlyList<IniEntry> Entries { get; }

    /// <summary>The line of the first header of <paramref name="section"/>, one of <see cref="Sections"/>.</summary>
    public int HeaderLine(string section)
    {
        for (int i = 0; i < Sections.Count; i++)
        {
            if (Sections[i] == section)
            {
                return _sectionLines[i];
            }
        }

        throw new ArgumentException($"no section [{section}]", nameof(section));
    }

    public static IniFile Parse(string path, string text)
    {
        var sections = new List<string>();
        var sectionLines = new List<int>();
        var entries = new List<IniEntry>();
        string? section = null;
        string[] lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            int lineNumber = i + 1;
            string line = WithoutTrailingComment(lines[i]).Trim();
            if (line.Length == 0 || line[0] is '#' or ';')
            {
                continue;
            }

            if (line[0] == '[')
            {
                if (line[^1] != ']' || line.Length < 3)
                {
                    throw new ConfigurationException($"{path}:{lineNumber}: '{line}' is not a section header: write [zram0] or [zramd]");
                }

                section = line[1..^1].Trim();
                if (!sections.Contains(section, StringComparer.Ordinal))
                {
                    sections.Add(section);
                    sectionLines.Add(lineNumber);
                }

                continue;
            }

            int equals = line.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                throw new ConfigurationException($"{path}:{lineNumber}: '{line}' is not a setting: write key = value");
            }

            if (section is null)
            {
                throw new ConfigurationException($"{path}:{lineNumber}: '{line}' comes before any section: put it under [zramd] or [zram0]");
            }

            entries.Add(new IniEntry(section, line[..equals].Trim(), line[(equals + 1)..].Trim(), lineNumber));
        }

        return new IniFile(path, sections, sectionLines, entries);
    }

    /// <summary>The line up to a # or ; that follows whitespace (a whole-line comment is left to the caller).</summary>
    private static string WithoutTrailingComment(string line)
    {
        for (int i = 1; i < line.Length; i++)
        {
            if (line[i] is '#' or ';' && char.IsWhiteSpace(line[i - 1]))
            {
                return line[..i];
            }
        }

        return line;
    }

    public static IniFile Load(string path)
    {
        string? text;
        try
        {
            text = BoundedFile.TryReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigurationException($"{path}: cannot read the configuration file: {e.Message}");
        }

        return text is null
            ? throw new ConfigurationException($"{path}: the configuration file holds more than {BoundedFile.MaxBytes >> 20} MiB, the most zramd reads")
            : Parse(path, text);
    }
}
