using ZramDaemon.Tests.Daemon;

namespace ZramDaemon.Tests.Configuration;

/// <summary>Two paths to one writeback file that differ as text: what a check comparing paths lets through.</summary>
public static class WritebackFileAlias
{
    public const string SymlinkedDirectory = "a symlinked directory";
    public const string SymlinkToTheFile = "a symlink to the file";
    public const string DanglingSymlink = "a symlink to a file not made yet";
    public const string HardLink = "a hard link";
    public const string DotDotAfterASymlink = "a symlink's .. (the parent of its target, not of the link)";

    /// <summary>Makes, under <paramref name="dir"/>, the file (holding "kept" when it must exist) and the second path
    /// to it.</summary>
    public static (string First, string Second) Make(string how, string dir)
    {
        string real = Directory.CreateDirectory(Path.Combine(dir, "real")).FullName;
        string first = Path.Combine(real, "shared.wb");
        string second;
        switch (how)
        {
            case SymlinkedDirectory:
                Directory.CreateSymbolicLink(Path.Combine(dir, "link"), real);
                second = Path.Combine(dir, "link", "shared.wb");
                break;
            case SymlinkToTheFile:
                File.WriteAllText(first, "kept");
                second = Path.Combine(dir, "alias.wb");
                File.CreateSymbolicLink(second, first);
                break;
            case DanglingSymlink:
                second = Path.Combine(dir, "alias.wb");
                File.CreateSymbolicLink(second, first);
                break;
            case HardLink:
                File.WriteAllText(first, "kept");
                second = Path.Combine(dir, "hard.wb");
                ClientTool.Run("ln", [first, second]).EnsureSuccess();
                break;
            case DotDotAfterASymlink:
                // other/link/../shared.wb: the kernel goes from the link's target, real/sub, up to real; as text
                // (Path.GetFullPath) it is other/shared.wb.
                Directory.CreateSymbolicLink(Path.Combine(Directory.CreateDirectory(Path.Combine(dir, "other")).FullName, "link"),
                    Directory.CreateDirectory(Path.Combine(real, "sub")).FullName);
                second = Path.Combine(dir, "other", "link", "..", "shared.wb");
                break;
            default:
                throw new ArgumentException($"no such alias '{how}'", nameof(how));
        }

        return (first, second);
    }
}
