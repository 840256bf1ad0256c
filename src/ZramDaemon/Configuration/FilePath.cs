using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;
using ZramDaemon.Native;

namespace ZramDaemon.Configuration;

/// <summary>Paths as written in the configuration or on the command line.</summary>
internal static class FilePath
{
    /// <summary>The absolute path that reaches the file the kernel would open for <paramref name="path"/>, with what
    /// cannot be one reported as an error rather than thrown (an ArgumentException would escape as an unhandled
    /// exception instead of one line naming the setting). <see cref="Path.GetFullPath(string)"/> alone takes
    /// <c>link/..</c> away as text, which is the link's own directory; the kernel goes to the parent of the link's
    /// target. So the part up to the last <c>..</c> is resolved as the kernel resolves it (realpath), and the rest,
    /// which has no <c>..</c>, is kept as written.</summary>
    public static bool TryGetFullPath(string path, [NotNullWhen(true)] out string? fullPath, out string error)
    {
        fullPath = null;
        error = string.Empty;
        if (path.Length == 0 || path.Contains('\0', StringComparison.Ordinal))
        {
            // On Linux GetFullPath refuses these two only.
            error = path.Length == 0 ? "a path is required" : "a path cannot contain a NUL character";
            return false;
        }

        string absolute = path;
        if (!Path.IsPathRooted(path))
        {
            try
            {
                absolute = Path.Join(Directory.GetCurrentDirectory(), path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // getcwd fails with ENOENT once the working directory was removed (a reload long after the start),
                // EACCES when a directory above it may not be read.
                error = $"a relative path, and the working directory cannot be found ({e.Message}; removed since the start?): use an absolute path";
                return false;
            }
        }

        int dotDot = LastDotDot(absolute);
        if (dotDot < 0)
        {
            fullPath = Path.GetFullPath(absolute);
            return true;
        }

        string head = absolute[..(dotDot + 2)];
        nint resolved = Interop.Libc.RealPath(head, 0);
        if (resolved == 0)
        {
            error = $"cannot resolve {head}: {Marshal.GetLastPInvokeErrorMessage()}";
            return false;
        }

        try
        {
            fullPath = Path.GetFullPath(Marshal.PtrToStringUTF8(resolved) + absolute[(dotDot + 2)..]);
            return true;
        }
        finally
        {
            Interop.Libc.Free(resolved);
        }
    }

    /// <summary>The index of the last <c>..</c> component of <paramref name="path"/>, or -1.</summary>
    private static int LastDotDot(string path)
    {
        for (int i = path.LastIndexOf("..", StringComparison.Ordinal); i >= 0; i = i == 0 ? -1 : path.LastIndexOf("..", i - 1, StringComparison.Ordinal))
        {
            if ((i == 0 || path[i - 1] == '/') && (i + 2 == path.Length || path[i + 2] == '/'))
            {
                return i;
            }
        }

        return -1;
    }
}
