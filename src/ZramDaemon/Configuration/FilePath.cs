using System.Diagnostics.CodeAnalysis;

namespace ZramDaemon.Configuration;

/// <summary>Paths as written in the configuration or on the command line.</summary>
internal static class FilePath
{
    /// <summary><see cref="Path.GetFullPath(string)"/>, with what it refuses reported as an error rather than thrown
    /// (an ArgumentException would escape as an unhandled exception instead of one line naming the setting).</summary>
    public static bool TryGetFullPath(string path, [NotNullWhen(true)] out string? fullPath, out string error)
    {
        fullPath = null;
        error = string.Empty;
        try
        {
            fullPath = Path.GetFullPath(path);
            return true;
        }
        catch (ArgumentException)
        {
            // On Linux it refuses these two only.
            error = path.Length == 0 ? "a path is required" : "a path cannot contain a NUL character";
            return false;
        }
    }
}
