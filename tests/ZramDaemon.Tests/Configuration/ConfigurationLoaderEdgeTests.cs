using ZramDaemon.Configuration;

namespace ZramDaemon.Tests.Configuration;

/// <summary>
/// Values that pass the loader's checks or escape them as exceptions other than <see cref="ConfigurationException"/>:
/// the rule is one line naming the key and why (exit 64 or 78), never an unhandled exception (exit 134) or a start
/// that fails later with a stack trace (exit 1).
/// </summary>
public sealed class ConfigurationLoaderEdgeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-config-edge-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private SystemFacts Facts() => new()
    {
        RamMiB = 16384,
        IsRoot = false,
        Environment = new Dictionary<string, string> { ["XDG_RUNTIME_DIR"] = _dir },
        DefaultConfigFile = Path.Combine(_dir, "absent.conf"),
    };

    private string WriteConfig(string text)
    {
        string path = Path.Combine(_dir, $"zramd-{Guid.NewGuid():N}.conf");
        File.WriteAllText(path, text);
        return path;
    }

    private ConfigurationException LoadFails(CommandLineSettings flags)
    {
        // Assert.Throws<T> checks the exact type: an ArgumentException or OverflowException escaping Load is the bug.
        Exception? thrown = Record.Exception(() => ConfigurationLoader.Load(flags, Facts()));
        Assert.NotNull(thrown);
        return Assert.IsType<ConfigurationException>(thrown);
    }

    /// <summary>A key left without its value (commented out after the '=', say) must be reported, not crash zramd:
    /// Path.GetFullPath("") throws ArgumentException, which nothing catches (exit 134, "Unhandled exception").</summary>
    [Theory]
    [InlineData("[zramd]\ncontrol =\n", "[zramd] control")]
    [InlineData("[zram0]\nwriteback-file =\n", "[zram0] writeback-file")]
    public void An_empty_path_value_is_one_configuration_error_not_an_unhandled_exception(string text, string key)
    {
        string config = WriteConfig(text);
        ConfigurationException e = LoadFails(new CommandLineSettings { ConfigPath = config, Listen = ["unix:" + Path.Combine(_dir, "z.sock")] });
        Assert.Contains($"{config}:2 {key}", e.Message, StringComparison.Ordinal);
        Assert.Equal(78, e.ExitCode);
    }

    /// <summary><c>zramd --config "$CONF"</c> with CONF unset is a usage error in one line naming the option, exit 64.
    /// Found by review: IniFile.Load catches IOException and UnauthorizedAccessException only, and File.ReadAllText("")
    /// threw ArgumentException: "Unhandled exception. System.ArgumentException: The value cannot be an empty string.
    /// (Parameter 'path')", exit 134.</summary>
    [Fact]
    public void An_empty_config_option_is_a_usage_error_not_an_unhandled_exception()
    {
        ConfigurationException e = LoadFails(new CommandLineSettings { ConfigPath = string.Empty, Listen = ["unix:" + Path.Combine(_dir, "z.sock")] });
        Assert.DoesNotContain('\n', e.Message);
        Assert.Equal("option --config = '': a path is required", e.Message);
        Assert.Equal(64, e.ExitCode);
    }

    /// <summary>A tls-key or tls-certificate that exists but cannot be read is one configuration error naming that key,
    /// with the OS's reason: the usual case is a key file of mode 0600 owned by root with zramd run as a user; the suite
    /// runs as root, so /proc/self/mem, whose read fails with EIO, stands in for it here. Found by review:
    /// LoadCertificate caught only CryptographicException around X509Certificate2.CreateFromPemFile, and the
    /// UnauthorizedAccessException or IOException escaped: "Unhandled exception", exit 134.</summary>
    [Theory]
    [InlineData("tls-key")]
    [InlineData("tls-certificate")]
    public void An_unreadable_tls_file_is_one_configuration_error_naming_the_key(string key)
    {
        (string certPath, string keyPath) = TestCertificate.Write(_dir);
        if (key == "tls-key")
        {
            keyPath = "/proc/self/mem";
        }
        else
        {
            certPath = "/proc/self/mem";
        }

        string config = WriteConfig($"[zramd]\ntls-mode = required\ntls-certificate = {certPath}\ntls-key = {keyPath}\n");
        ConfigurationException e = LoadFails(new CommandLineSettings { ConfigPath = config, Listen = ["tcp:127.0.0.1:10899"], ControlPath = Path.Combine(_dir, "z.ctl") });
        Assert.Contains($"[zramd] {key} = '/proc/self/mem': cannot read the file: ", e.Message, StringComparison.Ordinal);
        Assert.Equal(78, e.ExitCode);
    }

    /// <summary>The 1 MiB bound is on what is read: a configuration of exactly 1 MiB loads (comments pad it), one byte
    /// more is refused in one line naming the file, as is a PEM file past it, naming the key. Before, both were read
    /// whole: the larger configuration loaded, and the PEM file failed only as "cannot load the certificate and key".</summary>
    [Fact]
    public void A_configuration_or_pem_file_past_1_mib_is_refused_and_one_of_1_mib_loads()
    {
        string head = "[zram0]\nzram-size = 16M\n";
        string exact = WriteConfig(head + new string('#', (1 << 20) - head.Length - 1) + "\n");
        Assert.Equal(1 << 20, new FileInfo(exact).Length);
        var flags = new CommandLineSettings { ConfigPath = exact, Listen = ["unix:" + Path.Combine(_dir, "z.sock")] };
        Assert.Equal(16L << 20, Assert.Single(ConfigurationLoader.Load(flags, Facts()).Devices).DiskSize);

        File.AppendAllText(exact, "\n");
        ConfigurationException e = LoadFails(flags);
        Assert.Equal($"{exact}: the configuration file holds more than 1 MiB, the most zramd reads", e.Message);
        Assert.Equal(78, e.ExitCode);

        (string certPath, string keyPath) = TestCertificate.Write(_dir);
        File.AppendAllText(keyPath, new string('\n', 1 << 20));
        string config = WriteConfig($"[zramd]\ntls-mode = required\ntls-certificate = {certPath}\ntls-key = {keyPath}\n");
        e = LoadFails(new CommandLineSettings { ConfigPath = config, Listen = ["tcp:127.0.0.1:10899"], ControlPath = Path.Combine(_dir, "z.ctl") });
        Assert.Equal($"{config}:4 [zramd] tls-key = '{keyPath}': the file holds more than 1 MiB, the most zramd reads of a PEM certificate or key", e.Message);
        Assert.Equal(78, e.ExitCode);
    }

    /// <summary>ParseDuration accepts n up to 10^9 with any unit, but TimeSpan.FromHours(10^9) is past TimeSpan.MaxValue
    /// (about 2.56e8 hours): OverflowException, unhandled.</summary>
    [Fact]
    public void A_huge_recompress_idle_after_in_hours_is_a_configuration_error_not_an_overflow()
    {
        string config = WriteConfig("[zram0]\nrecompress-algorithm = zstd\nrecompress-idle-after = 1000000000h\n");
        ConfigurationException e = LoadFails(new CommandLineSettings { ConfigPath = config, Listen = ["unix:" + Path.Combine(_dir, "z.sock")] });
        Assert.Contains("[zram0] recompress-idle-after", e.Message, StringComparison.Ordinal);
    }

    /// <summary>A plain size near long.MaxValue passes SizeParser, then PAGE_ALIGN's checked add overflows
    /// (ConfigurationLoader.BuildDevice: checked((diskSize + 4095) &amp; ~4095L)).</summary>
    [Fact]
    public void A_size_near_long_max_is_a_usage_error_not_an_overflow()
    {
        ConfigurationException e = LoadFails(new CommandLineSettings { Size = "9223372036854775807", Listen = ["unix:" + Path.Combine(_dir, "z.sock")] });
        Assert.Contains("option --size", e.Message, StringComparison.Ordinal);
        Assert.Equal(64, e.ExitCode);
    }

    /// <summary>The loader accepts sizes up to 1 PiB (expressions) or 8 EiB (plain sizes), but ZramDevice refuses more
    /// than 8 TiB - 4 KiB in its constructor, after the configuration was logged and memory locked: exit 1 with an
    /// ArgumentException's stack trace instead of exit 78 naming the key.</summary>
    [Theory]
    [InlineData("[zram0]\nzram-size = 16T\n", null)]
    [InlineData(null, "100T")]
    public void A_size_the_device_refuses_is_refused_by_the_configuration(string? text, string? flag)
    {
        string? config = text is null ? null : WriteConfig(text);
        ConfigurationException e = LoadFails(new CommandLineSettings { ConfigPath = config, Size = flag, Listen = ["unix:" + Path.Combine(_dir, "z.sock")] });
        Assert.Contains(flag is null ? "[zram0] zram-size" : "option --size", e.Message, StringComparison.Ordinal);
    }

    /// <summary>Listen addresses are checked against sun_path's 107 bytes; the control socket is not, so zramd binds
    /// its NBD sockets and then fails in UnixDomainSocketEndPoint's constructor (exit 1, stack trace).</summary>
    [Fact]
    public void A_control_path_too_long_for_a_unix_socket_is_a_usage_error()
    {
        string control = Path.Combine(_dir, new string('c', 120) + ".ctl");
        ConfigurationException e = LoadFails(new CommandLineSettings { ControlPath = control, Listen = ["unix:" + Path.Combine(_dir, "z.sock")] });
        Assert.Contains("option --control", e.Message, StringComparison.Ordinal);
        Assert.Equal(64, e.ExitCode);
    }

    /// <summary>README.md's [zramd]/[zram0] example puts a '# ...' comment after each value; IniFile strips only whole-line
    /// comments, so for path keys the comment silently becomes part of the path (most other keys then fail to
    /// parse, which is at least reported): the control socket is created as "zramd.ctl   # ZRAMD_CONTROL, --control"
    /// and `zramd status` never finds it. Expected: the comment stripped, or the value refused.</summary>
    [Fact]
    public void A_readme_style_trailing_comment_does_not_silently_become_part_of_the_control_path()
    {
        string config = WriteConfig("[zramd]\ncontrol = /run/zramd/zramd.ctl      # ZRAMD_CONTROL, --control\n");
        ZramdConfiguration? loaded = null;
        Exception? thrown = Record.Exception(() => loaded = ConfigurationLoader.Load(
            new CommandLineSettings { ConfigPath = config, Listen = ["unix:" + Path.Combine(_dir, "z.sock")] }, Facts()));
        if (thrown is null)
        {
            Assert.Equal("/run/zramd/zramd.ctl", loaded!.ControlPath);
        }
        else
        {
            Assert.IsType<ConfigurationException>(thrown);
        }
    }
}
