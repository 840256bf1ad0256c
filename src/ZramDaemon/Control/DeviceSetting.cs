using ZramDaemon.Compression;
using ZramDaemon.Configuration;

namespace ZramDaemon.Control;

/// <summary>
/// What <c>zramd set NAME KEY=VALUE</c> changes on a running device, after the kernel's writable zram attributes:
/// <c>mem_limit</c> (a size, 0: none), <c>mem_used_max</c> (only 0, which restarts the peak from the current usage,
/// as writing 0 to the kernel's attribute does) and <c>writeback_limit</c> (bytes a day the device may write to its
/// backing file, 0: none; the kernel's counts pages down instead), and beyond the kernel, whose algorithm is fixed once
/// the device has a size, <c>comp_algorithm</c> (new writes use it; stored pages keep theirs and stay readable).
/// The CLI checks a request with this before sending it and the daemon parses it again, so both give the same one
/// line for a bad one.
/// </summary>
/// <param name="Bytes">The size of mem_limit, mem_used_max and writeback_limit.</param>
/// <param name="Algorithm">comp_algorithm's, in its canonical form ("zstd:3").</param>
public readonly record struct DeviceSetting(string Key, long Bytes, string? Algorithm = null)
{
    public const string MemLimit = "mem_limit";
    public const string MemUsedMax = "mem_used_max";
    public const string WritebackLimit = "writeback_limit";
    public const string CompAlgorithm = "comp_algorithm";

    /// <summary>The assignments set takes, for usage lines.</summary>
    public const string Assignments = "mem_limit=SIZE, mem_used_max=0, writeback_limit=SIZE or comp_algorithm=ALGORITHM";

    /// <summary>
    /// Why <paramref name="bytes"/> cannot be a writeback limit (bytes a day, 0 for none), or null: above 0 it must hold
    /// a page. The kernel's writeback_limit counts 4K pages, and its "400" taken as bytes here would stop every
    /// writeback without a word.
    /// </summary>
    public static string? RefuseWritebackLimit(long bytes) => bytes is > 0 and < Device.ZramDevice.PageSize
        ? $"{bytes} bytes is less than a page, so nothing could be written back: the limit is in bytes per day "
            + "(K/M/G/T suffixes; 0: no limit), not the kernel's 4K pages"
        : null;

    public static bool TryParse(string key, string value, out DeviceSetting setting, out string error)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        setting = default;
        switch (key)
        {
            case MemLimit or WritebackLimit:
                if (!SizeParser.TryParse(value, out long bytes, out string why))
                {
                    error = $"{key}: {why}";
                    return false;
                }

                if (key == WritebackLimit && RefuseWritebackLimit(bytes) is { } refused)
                {
                    error = $"{key}: {refused}";
                    return false;
                }

                setting = new DeviceSetting(key, bytes);
                error = string.Empty;
                return true;
            case MemUsedMax:
                if (value != "0")
                {
                    error = $"{key}: only 0 can be written (it restarts the peak from the current usage)";
                    return false;
                }

                setting = new DeviceSetting(key, 0);
                error = string.Empty;
                return true;
            case CompAlgorithm:
                if (!CompressionSpec.TryParse(value, out CompressionSpec spec, out error))
                {
                    error = $"{key}: {error}";
                    return false;
                }

                setting = new DeviceSetting(key, 0, spec.ToString());
                return true;
            default:
                error = $"'{key}' cannot be set: set takes {Assignments}";
                return false;
        }
    }
}
