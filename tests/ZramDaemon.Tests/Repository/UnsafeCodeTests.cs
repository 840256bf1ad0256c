using System.Text.RegularExpressions;

namespace ZramDaemon.Tests.Repository;

/// <summary>Unsafe code stays in the files docs/SECURITY.md names (its "Native memory and unsafe code" table).</summary>
public sealed partial class UnsafeCodeTests
{
    [Fact]
    public void Every_file_with_unsafe_code_is_named_in_SECURITY_md_and_every_named_file_has_some()
    {
        string root = RepositoryRoot.Path;
        string src = Path.Combine(root, "src");
        var withUnsafe = Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .Where(f => File.ReadLines(f).Any(line => UnsafeKeyword().IsMatch(StripComment(line))))
            .Select(f => Path.GetRelativePath(root, f).Replace(Path.DirectorySeparatorChar, '/'))
            .ToHashSet();
        Assert.NotEmpty(withUnsafe);

        string security = File.ReadAllText(Path.Combine(root, "docs", "SECURITY.md"));
        int start = security.IndexOf("## Native memory and unsafe code", StringComparison.Ordinal);
        Assert.True(start >= 0, "SECURITY.md has no 'Native memory and unsafe code' section");
        int end = security.IndexOf("\n## ", start + 1, StringComparison.Ordinal);
        string section = security[start..(end < 0 ? security.Length : end)];
        var named = section.Split('\n')
            .Where(line => line.StartsWith("| `src/", StringComparison.Ordinal))
            .SelectMany(line => NamedFile().Matches(line.Split('|')[1]).Select(m => m.Groups[1].Value))
            .ToHashSet();

        Assert.True(withUnsafe.SetEquals(named),
            $"unsafe but not in SECURITY.md: {string.Join(", ", withUnsafe.Except(named))}; "
            + $"in SECURITY.md but without unsafe: {string.Join(", ", named.Except(withUnsafe))}");
    }

    private static string StripComment(string line)
    {
        int comment = line.IndexOf("//", StringComparison.Ordinal);
        return comment < 0 ? line : line[..comment];
    }

    [GeneratedRegex(@"\bunsafe\b")]
    private static partial Regex UnsafeKeyword();

    [GeneratedRegex(@"`(src/[^`]+\.cs)`")]
    private static partial Regex NamedFile();
}
