using ZramDaemon.Configuration;
using ZramDaemon.Hosting;

namespace ZramDaemon.Tests.Configuration;

/// <summary>What a reload compares (<see cref="ConfigurationReport.Settings"/>): every setting the start logs, by the
/// key an admin writes, each once, with its value whole.</summary>
public sealed class ConfigurationReportTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-report-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A path may hold ", KEY = " itself: taken for a setting of its own, it named a key twice, and the
    /// reload that compared by key threw (SIGHUP ended the daemon, and the data with it).</summary>
    [Fact]
    public void Settings_name_each_key_once_with_its_whole_value_even_one_holding_a_comma()
    {
        string control = Path.Combine(_dir, "a, log-level = debug", "zramd.ctl");
        string writeback = Path.Combine(_dir, "b, writeback-limit = 1", "zram1.wb");
        Directory.CreateDirectory(Path.GetDirectoryName(writeback)!);
        string config = Path.Combine(_dir, "zramd.conf");
        File.WriteAllText(config, $"[zramd]\ncontrol = {control}\nmax-connections = 7\n[zram0]\nzram-size = 16M\n[zram1]\nzram-size = 32M\ndedup = yes\nwriteback-file = {writeback}\nrecompress-algorithm = zstd\n");
        ZramdConfiguration loaded = ConfigurationLoader.Load(new CommandLineSettings { ConfigPath = config }, new SystemFacts
        {
            RamMiB = 16384,
            IsRoot = false,
            Environment = new Dictionary<string, string> { ["XDG_RUNTIME_DIR"] = _dir },
            DefaultConfigFile = Path.Combine(_dir, "absent.conf"),
        });

        IReadOnlyList<KeyValuePair<string, string>> settings = ConfigurationReport.Settings(loaded);
        Assert.Equal(settings.Count, settings.Select(s => s.Key).Distinct().Count());
        Assert.Equal(control, settings.Single(s => s.Key == "control").Value);
        Assert.Equal("7", settings.Single(s => s.Key == "max-connections").Value);
        Assert.Equal("16M", settings.Single(s => s.Key == "[zram0] zram-size").Value);
        Assert.Equal("32M", settings.Single(s => s.Key == "[zram1] zram-size").Value);
        Assert.Equal("yes", settings.Single(s => s.Key == "[zram1] dedup").Value);
        Assert.Equal(writeback, settings.Single(s => s.Key == "[zram1] writeback-file").Value);
        Assert.Equal("none", settings.Single(s => s.Key == "[zram1] writeback-limit").Value);
        Assert.Equal("info", settings.Single(s => s.Key == "log-level").Value);
        Assert.Equal("90%", settings.Single(s => s.Key == "[zram0] compact-watermark").Value);

        // Every message the start logs is one of these: a placeholder Settings cannot fill would throw here.
        Assert.Equal("zstd:3", settings.Single(s => s.Key == "[zram1] recompress-algorithm").Value);
        Assert.EndsWith("%", settings.Single(s => s.Key == "[zram1] recompress-cpu-percent").Value, StringComparison.Ordinal);
        Assert.DoesNotContain(settings, s => s.Key == "[zram0] dedup");

        // Every key is one an admin writes (the first line, the file read and the RAM, is not a setting).
        Assert.All(settings, s => Assert.Matches(@"^(\[zram\d\] )?[a-z-]+$", s.Key));
    }
}
