using System.Text.RegularExpressions;
using ZramDaemon.Configuration;

namespace ZramDaemon.Tests.Repository;

/// <summary>README.md's configuration example is what a user copies into /etc/zramd/zramd.conf: it must load,
/// with every key taking the value shown (no comment read as part of a value).</summary>
public sealed partial class ReadmeConfigurationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-readme-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [GeneratedRegex(@"```ini\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex IniBlock();

    [Fact]
    public void The_README_configuration_example_loads_with_the_values_it_shows()
    {
        string readme = File.ReadAllText(System.IO.Path.Combine(RepositoryRoot.Path, "README.md"));
        string example = IniBlock().Match(readme).Groups[1].Value;
        Assert.Contains("[zram0]", example, StringComparison.Ordinal);

        // The writeback file's directory exists on an installed system (StateDirectory=); here it is a scratch one.
        string conf = System.IO.Path.Combine(_dir, "zramd.conf");
        File.WriteAllText(conf, example.Replace("/var/lib/zramd/", _dir + "/", StringComparison.Ordinal));
        var facts = new SystemFacts
        {
            RamMiB = 16384,
            IsRoot = true,
            CanChownToAnyGroup = true,
            FindGroup = name => name switch { "root" => 0, "disk" => 6, _ => null },
            Environment = new Dictionary<string, string>(),
            DefaultConfigFile = System.IO.Path.Combine(_dir, "absent.conf"),
        };

        ZramdConfiguration config = ConfigurationLoader.Load(new CommandLineSettings { ConfigPath = conf }, facts);

        Assert.Equal(["unix:/run/zramd/zramd.sock", "tcp:127.0.0.1:10809"], config.Listen.Select(l => l.ToString()));
        Assert.Equal("/run/zramd/zramd.ctl", config.ControlPath);
        Assert.Equal("disk", config.SocketGroup);
        DeviceConfiguration device = Assert.Single(config.Devices);
        Assert.Equal(4096L << 20, device.DiskSize);
        Assert.Equal("lz4", device.Algorithm);
    }
}
