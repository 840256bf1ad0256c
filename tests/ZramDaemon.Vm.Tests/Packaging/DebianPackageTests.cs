using ZramDaemon.Vm.Tests.Harness;
using ZramDaemon.Vm.Tests.Systemd;

namespace ZramDaemon.Vm.Tests.Packaging;

/// <summary>packaging/build-deb.sh's package, unpacked into a scratch root with dpkg -x.</summary>
public sealed class DebianPackageTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("zramd-deb-test-").FullName;

    [Fact]
    public void The_package_installs_the_daemon_units_config_and_man_page_and_zramd_runs_from_it()
    {
        ProcessResult build = ProcessRunner.Run(Path.Combine(Repository.Root, "packaging", "build-deb.sh"),
            [_work, "--publish", ZramdPublish.Directory], TimeSpan.FromMinutes(10));
        Assert.True(build.ExitCode == 0, build.Describe());
        string deb = build.StandardOutput.Trim().Split('\n')[^1];
        Assert.Matches(@"/zramd_[0-9.]+_amd64\.deb$", deb);

        ProcessResult info = ProcessRunner.Run("dpkg-deb", ["--field", deb, "Package", "Architecture", "Depends"], TimeSpan.FromMinutes(1));
        Assert.Contains("Package: zramd", info.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("Architecture: amd64", info.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("liblz4-1", info.StandardOutput, StringComparison.Ordinal);
        ProcessResult conffiles = ProcessRunner.Run("dpkg-deb", ["--info", deb, "conffiles"], TimeSpan.FromMinutes(1));
        Assert.Equal("/etc/zramd/zramd.conf", conffiles.StandardOutput.Trim());

        string root = Path.Combine(_work, "root");
        ProcessResult extract = ProcessRunner.Run("dpkg", ["-x", deb, root], TimeSpan.FromMinutes(2));
        Assert.True(extract.ExitCode == 0, extract.Describe());
        foreach (string file in (string[])["usr/bin/zramd", "etc/zramd/zramd.conf", "usr/share/man/man8/zramd.8.gz",
                     "usr/lib/modules-load.d/zramd.conf", "lib/systemd/system/zramd.service", "lib/systemd/system/zramd-swap.service",
                     "lib/systemd/system/zramd-scratch.service", "lib/systemd/system/mnt-zram.mount", "usr/share/doc/zramd/README.md"])
        {
            Assert.True(File.Exists(Path.Combine(root, file)), $"{file} is not in the package");
        }

        string zramd = Path.Combine(root, "usr", "bin", "zramd");
        Assert.True((File.GetUnixFileMode(zramd) & UnixFileMode.UserExecute) != 0);
        // Self-contained: it runs with no DOTNET_ROOT and no dotnet on PATH.
        var bare = new Dictionary<string, string> { ["PATH"] = "/usr/bin:/bin", ["DOTNET_ROOT"] = "/nonexistent" };
        ProcessResult help = ProcessRunner.Run(zramd, ["--help"], TimeSpan.FromMinutes(1), bare);
        Assert.True(help.ExitCode == 0, help.Describe());
        Assert.Contains("attach", help.StandardOutput, StringComparison.Ordinal);

        // The installed binary is the daemon, trimmed and all: it serves, and answers its control verbs.
        using (var daemon = ZramdServer.Start(size: "64M", executable: zramd))
        {
            Assert.Equal(64L << 20, daemon.Stats()["disksize"]);
        }

        // Every config line is a comment or a section header: the default config changes nothing.
        foreach (string line in File.ReadAllLines(Path.Combine(root, "etc", "zramd", "zramd.conf")))
        {
            Assert.True(line.Length == 0 || line.StartsWith('#') || line.StartsWith('['), $"not commented: {line}");
        }

        // The installed units verify against the installed binary.
        string units = UnitFolder.CopyWithZramd(Path.Combine(root, "lib", "systemd", "system"), zramd);
        try
        {
            foreach (string unit in Directory.EnumerateFiles(units))
            {
                ProcessResult verify = ProcessRunner.Run("systemd-analyze", ["verify", "--man=no", unit], TimeSpan.FromMinutes(1));
                Assert.True(verify.ExitCode == 0 && verify.StandardError.Trim().Length == 0, unit + ": " + verify.Describe());
            }
        }
        finally
        {
            Directory.Delete(units, recursive: true);
        }
    }

    public void Dispose() => Directory.Delete(_work, recursive: true);
}
