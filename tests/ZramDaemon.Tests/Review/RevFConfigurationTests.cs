using ZramDaemon.Configuration;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (RevF): compression-algorithm's zram-generator list (ParseAlgorithmList) where --algorithm and
/// ZRAMD_ALGORITHM override it, and mem_limit's page rounding on the configuration path.
/// </summary>
public sealed class RevFConfigurationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-revf-config-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private SystemFacts Facts(params (string Name, string Value)[] env) => new()
    {
        RamMiB = 16384,
        IsRoot = false,
        Environment = env.Append(("XDG_RUNTIME_DIR", "/run/user/1000")).ToDictionary(e => e.Item1, e => e.Item2),
        DefaultConfigFile = Path.Combine(_dir, "absent.conf"),
    };

    private string WriteConfig(string text)
    {
        string path = Path.Combine(_dir, $"zramd-{Guid.NewGuid():N}.conf");
        File.WriteAllText(path, text);
        return path;
    }

    /// <summary>
    /// FAILS on the current code. A file that is valid on its own, zram-generator's list with recompression tuning:
    /// `compression-algorithm = lz4 zstd(level=3)` and `recompress-idle-after = 5min`. Started with `--algorithm zstd`
    /// (the documented way to change the compression algorithm of every device), the flag replaces the whole list,
    /// so the recompression algorithm the file set is silently dropped, and the load then fails on the file's
    /// recompress-idle-after line ("has no effect without recompress-algorithm in the same section", exit 78), a line
    /// nothing is wrong with. Before the list form (recompress-algorithm = zstd:3 in the file) the same flag kept
    /// recompression: --algorithm should set the compression algorithm, the first of the list, and leave the file's
    /// recompression algorithm alone (or at least fail naming the option, not the file).
    /// </summary>
    [Fact]
    public void Algorithm_flag_over_a_file_list_keeps_the_files_recompression_algorithm()
    {
        string path = WriteConfig("[zram0]\nzram-size = 8\ncompression-algorithm = lz4 zstd(level=3)\nrecompress-idle-after = 5min\n");

        ZramdConfiguration? config = null;
        ConfigurationException? error = null;
        try
        {
            config = ConfigurationLoader.Load(new CommandLineSettings { ConfigPath = path, Algorithm = "zstd" }, Facts());
        }
        catch (ConfigurationException e)
        {
            error = e;
        }

        bool kept = config is { } c && c.Devices[0].Algorithm == "zstd:3" && c.Devices[0].RecompressAlgorithm == "zstd:3";
        bool namesOption = error is not null && error.ExitCode == 64 && error.Message.Contains("option --algorithm", StringComparison.Ordinal);
        Assert.True(kept || namesOption,
            $"--algorithm zstd over `compression-algorithm = lz4 zstd(level=3)`: {(error is null ? $"recompression algorithm {config!.Devices[0].RecompressAlgorithm ?? "none"}" : $"exit {error.ExitCode}: {error.Message}")}; "
            + "the flag names the compression algorithm and should leave the recompression algorithm the file gives (the second of its list), "
            + "as it did with recompress-algorithm");
    }

    /// <summary>
    /// FAILS on the current code. --algorithm and ZRAMD_ALGORITHM go through the list parser and apply to every device,
    /// so `--algorithm "lz4 zstd"` sets a recompression algorithm on each. On a device whose file section has
    /// recompress-algorithm (a file valid on its own), the load fails with the file's line blamed: "[zram0]
    /// recompress-algorithm = 'lz4hc': the recompression algorithm is given twice: here and as the second of
    /// compression-algorithm (zstd)" with exit 78 (a configuration error), though the file has no
    /// compression-algorithm and the conflict is the option's or the variable's. An override should override (the
    /// flag's recompression algorithm wins, as flags and ZRAMD_* beat the file everywhere else), or the error should
    /// name the option (exit 64) or the environment variable.
    /// </summary>
    [Theory]
    [InlineData("flag")]
    [InlineData("env")]
    public void An_algorithm_list_override_is_not_blamed_on_the_files_recompress_algorithm(string source)
    {
        string path = WriteConfig("[zram0]\nzram-size = 8\nrecompress-algorithm = lz4hc\n");
        CommandLineSettings flags = source == "flag" ? new CommandLineSettings { ConfigPath = path, Algorithm = "lz4 zstd" } : new CommandLineSettings { ConfigPath = path };
        SystemFacts facts = source == "env" ? Facts(("ZRAMD_ALGORITHM", "lz4 zstd")) : Facts();
        string origin = source == "flag" ? "option --algorithm" : "environment variable ZRAMD_ALGORITHM";

        ZramdConfiguration? config = null;
        ConfigurationException? error = null;
        try
        {
            config = ConfigurationLoader.Load(flags, facts);
        }
        catch (ConfigurationException e)
        {
            error = e;
        }

        bool overridden = config is { } c && c.Devices[0].RecompressAlgorithm == "zstd:3";
        bool namesOverride = error is not null && error.Message.Contains(origin, StringComparison.Ordinal)
            && (source != "flag" || error.ExitCode == 64);
        Assert.True(overridden || namesOverride,
            $"{origin} = 'lz4 zstd' over a file with recompress-algorithm = lz4hc: "
            + (error is null ? $"recompression algorithm {config!.Devices[0].RecompressAlgorithm}" : $"exit {error.ExitCode}: {error.Message}")
            + $"; expected the override to win (zstd:3), or an error naming {origin}, not the file's valid line");
    }

    /// <summary>
    /// FAILS on the current code. ParseAlgorithmList splits the value with a regex that skips what no word matches: an
    /// unclosed "(" is dropped. `compression-algorithm = lz4 (zstd` is then "lz4 zstd" and loads with zstd as the
    /// recompression algorithm, and `lz4 zstd(level=3` becomes the three words lz4, zstd, level=3 and is refused as
    /// "an algorithm, and at most one more to recompress with", a reason that is not the value's fault (it has two).
    /// A bad value should be refused, with why it is bad.
    /// </summary>
    [Theory]
    [InlineData("lz4 (zstd")]
    [InlineData("lz4 zstd(level=3")]
    public void An_unclosed_parenthesis_in_an_algorithm_list_is_refused_as_such(string value)
    {
        string path = WriteConfig($"[zram0]\nzram-size = 8\ncompression-algorithm = {value}\n");

        ZramdConfiguration? config = null;
        ConfigurationException? error = null;
        try
        {
            config = ConfigurationLoader.Load(new CommandLineSettings { ConfigPath = path }, Facts());
        }
        catch (ConfigurationException e)
        {
            error = e;
        }

        Assert.True(error is not null && error.ExitCode == 78 && !error.Message.Contains("at most one more", StringComparison.Ordinal),
            $"compression-algorithm = '{value}': "
            + (error is null ? $"loaded as {config!.Devices[0].Algorithm}, recompressing with {config.Devices[0].RecompressAlgorithm ?? "nothing"}" : $"exit {error.ExitCode}: {error.Message}")
            + "; expected a refusal for the unclosed parenthesis, not a silent reading of it or a count of algorithms it does not have");
    }

    /// <summary>
    /// FAILS on the current code. The device rounds mem_limit up to whole pages and checks its minimum against the
    /// rounded limit (ZramDevice ctor, PageAligned), so a limit a few bytes below the minimum that rounds up to at least
    /// it is one the device takes. The configuration loader checks the minimum on the value as given, before the
    /// rounding, and refuses it: `--mem-limit` of PAGE_ALIGN(minimum) - 4095 bytes is a usage error though the device
    /// would run at PAGE_ALIGN(minimum).
    /// </summary>
    [Fact]
    public void Mem_limit_flag_is_checked_against_the_minimum_after_page_rounding_as_the_device_does()
    {
        const long diskSize = 8L << 20;
        long minimum = ZramDevice.MinimumMemLimitFor(diskSize, dedup: false);
        long aligned = (minimum + 4095) / 4096 * 4096;
        long requested = aligned - 4095;
        Assert.True(requested < minimum, $"precondition: the minimum {minimum} is not page-aligned");
        string path = WriteConfig("[zram0]\nzram-size = 8\n");

        ZramdConfiguration? config = null;
        ConfigurationException? error = null;
        try
        {
            config = ConfigurationLoader.Load(new CommandLineSettings { ConfigPath = path, MemLimit = requested.ToString(System.Globalization.CultureInfo.InvariantCulture) }, Facts());
        }
        catch (ConfigurationException e)
        {
            error = e;
        }

        Assert.True(error is null,
            $"--mem-limit {requested} (PAGE_ALIGN: {aligned}, minimum {minimum}) was refused: {error?.Message}; the device rounds the limit "
            + "up to whole pages before checking its minimum, and would take it");
        Assert.True(config!.Devices[0].MemLimit is var limit && (limit == requested || limit == aligned), $"mem_limit {config.Devices[0].MemLimit}");
    }

    // Review (RevG) of the RevF fix to --algorithm and ZRAMD_ALGORITHM: one algorithm in place of the first of the
    // file's list, which is not read then.

    /// <summary>
    /// FAILS on the current code (a regression of 69335bd). A zram-generator file says `compression-algorithm =
    /// lzo-rle` (the kernel's usual default, which zramd does not have); `zramd --config FILE --algorithm lz4` (or
    /// ZRAMD_ALGORITHM=lz4) is the way to run it anyway, as flags and ZRAMD_* replace the file's values everywhere else
    /// (a file's zram-size or zram-resident-limit under --size or --mem-limit is not even parsed). Before 69335bd the
    /// flag replaced the value and the daemon started with lz4. Now the flag only replaces the first algorithm after
    /// BuildDevice has parsed the file's whole list (ParseAlgorithmList, then AlgorithmOverride), so the file's
    /// algorithm the flag replaces is still validated, and the load fails with exit 78 on the file's line. The same
    /// with a list, `lzo-rle zstd`: the flag should replace lzo-rle and keep zstd.
    /// </summary>
    [Theory]
    [InlineData("lzo-rle", "flag", null)]
    [InlineData("lzo-rle", "env", null)]
    [InlineData("lzo-rle zstd", "flag", "zstd:3")]
    [InlineData("lzo-rle zstd", "env", "zstd:3")]
    public void An_algorithm_override_replaces_a_first_algorithm_zramd_does_not_have(string fileValue, string source, string? recompress)
    {
        string path = WriteConfig($"[zram0]\nzram-size = 8\ncompression-algorithm = {fileValue}\n");
        CommandLineSettings flags = source == "flag" ? new CommandLineSettings { ConfigPath = path, Algorithm = "lz4" } : new CommandLineSettings { ConfigPath = path };
        SystemFacts facts = source == "env" ? Facts(("ZRAMD_ALGORITHM", "lz4")) : Facts();

        ZramdConfiguration? config = null;
        ConfigurationException? error = null;
        try
        {
            config = ConfigurationLoader.Load(flags, facts);
        }
        catch (ConfigurationException e)
        {
            error = e;
        }

        Assert.True(error is null && config!.Devices[0].Algorithm == "lz4" && config.Devices[0].RecompressAlgorithm == recompress,
            $"{(source == "flag" ? "--algorithm lz4" : "ZRAMD_ALGORITHM=lz4")} over `compression-algorithm = {fileValue}`: "
            + (error is null ? $"algorithm {config!.Devices[0].Algorithm}, recompression {config.Devices[0].RecompressAlgorithm ?? "none"}" : $"exit {error.ExitCode}: {error.Message}")
            + $"; expected lz4, recompressing with {recompress ?? "nothing"}: the override replaces the file's first algorithm, which should not "
            + "then be validated (before 69335bd it was not, and a file's size or limit under --size or --mem-limit is not)");
    }
}
