using System.Text;

namespace ZramDaemon.Configuration;

/// <summary>Reads the small text files the configuration names (the file itself, PEM files) with a bound: an endless
/// source (<c>--config /dev/zero</c>, a FIFO a program keeps writing) would otherwise be read until memory runs out.
/// The bound is on what is read, not on the size the file reports, which is 0 for a device or a FIFO.</summary>
internal static class BoundedFile
{
    /// <summary>The most zramd reads of one such file: a configuration is a few KiB, a PEM certificate chain and its key
    /// a few more (even the whole system CA bundle, about 200 KiB, fits).</summary>
    public const int MaxBytes = 1 << 20;

    /// <summary>The text, with its encoding detected from a byte order mark as <see cref="File.ReadAllText(string)"/>
    /// does; null when the file holds more than <see cref="MaxBytes"/>. Throws what opening and reading throw.</summary>
    public static string? TryReadAllText(string path)
    {
        // FileStream says a directory is "access denied", which sends an admin to the permissions, even root.
        if (Directory.Exists(path))
        {
            throw new IOException("it is a directory, not a file");
        }

        // One byte past the bound tells "exactly MaxBytes" from "more".
        byte[] buffer = new byte[MaxBytes + 1];
        int length = 0;
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0))
        {
            int read;
            while (length < buffer.Length && (read = stream.Read(buffer, length, buffer.Length - length)) > 0)
            {
                length += read;
            }
        }

        if (length > MaxBytes)
        {
            return null;
        }

        using var reader = new StreamReader(new MemoryStream(buffer, 0, length), Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        return reader.ReadToEnd();
    }
}
