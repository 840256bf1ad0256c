using ZramDaemon.Configuration;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (RevG) of the RevF fix to --algorithm and ZRAMD_ALGORITHM (commit 69335bd): they now set
/// DeviceValues.AlgorithmOverride, one algorithm in place of the first of the file's compression-algorithm list,
/// while the file's list is still parsed in full.
/// </summary>
public sealed class RevGConfigurationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-revg-config-").FullName;

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
