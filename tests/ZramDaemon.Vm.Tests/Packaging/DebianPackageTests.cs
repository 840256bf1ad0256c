using System.Text.RegularExpressions;
using ZramDaemon.Vm.Tests.Harness;
using ZramDaemon.Vm.Tests.Systemd;

namespace ZramDaemon.Vm.Tests.Packaging;

/// <summary>packaging/build-deb.sh's package, unpacked into a scratch root with dpkg -x, and installed, removed and
/// purged with dpkg in the VM under systemd.</summary>
[Collection(VmCollection.Name)]
public sealed class DebianPackageTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("zramd-deb-test-").FullName;

    [Fact]
    public void The_package_installs_the_daemon_units_config_and_man_page_and_zramd_runs_from_it()
    {
        string deb = BuildPackage();

        ProcessResult info = ProcessRunner.Run("dpkg-deb", ["--field", deb, "Package", "Architecture", "Depends"], TimeSpan.FromMinutes(1));
        Assert.Contains("Package: zramd", info.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("Architecture: amd64", info.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("liblz4-1", info.StandardOutput, StringComparison.Ordinal);
        ProcessResult conffiles = ProcessRunner.Run("dpkg-deb", ["--info", deb, "conffiles"], TimeSpan.FromMinutes(1));
        Assert.Equal("/etc/zramd/zramd.conf\n/etc/needrestart/conf.d/zramd.conf", conffiles.StandardOutput.Trim());

        string root = Path.Combine(_work, "root");
        ProcessResult extract = ProcessRunner.Run("dpkg", ["-x", deb, root], TimeSpan.FromMinutes(2));
        Assert.True(extract.ExitCode == 0, extract.Describe());
        AssertUnitProgramsAreProvided(deb, root);
        foreach (string file in (string[])["usr/bin/zramd", "etc/zramd/zramd.conf", "usr/share/man/man8/zramd.8.gz",
                     "usr/lib/modules-load.d/zramd.conf", "lib/systemd/system/zramd.service", "lib/systemd/system/zramd-swap.service",
                     "lib/systemd/system/zramd-scratch.service", "lib/systemd/system/mnt-zram.mount", "usr/share/doc/zramd/README.md"])
        {
            Assert.True(File.Exists(Path.Combine(root, file)), $"{file} is not in the package");
        }

        // needrestart (Ubuntu restarts what maps a replaced library after every apt run) is told never to restart
        // zramd: a restart empties its devices. Read as needrestart reads its conf.d (Perl, into %nrconf), and matched
        // as it matches a unit's name against override_rc's keys.
        string needrestart = Path.Combine(root, "etc", "needrestart", "conf.d", "zramd.conf");
        ProcessResult overrides = ProcessRunner.Run("perl", ["-e",
            "our %nrconf; my $f = shift; do $f; die $@ if $@; for my $u (@ARGV) { my @k = grep { $u =~ /$_/ } keys %{$nrconf{override_rc}}; "
            + "print \"$u=\", (@k ? $nrconf{override_rc}{$k[0]} : 'none'), \"\\n\" }", needrestart, "zramd.service", "zramd-swap.service"], TimeSpan.FromMinutes(1));
        Assert.True(overrides.ExitCode == 0, overrides.Describe());
        Assert.Equal("zramd.service=0\nzramd-swap.service=none", overrides.StandardOutput.Trim());

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

    /// <summary>
    /// guest/deb.sh: dpkg under systemd as PID 1 with zramd's units enabled and running and swap of the admin's own
    /// on a third zramd device holding a process's pages. Removal must not take that swap's device away: prerm
    /// stops the swap and scratch units, finds /dev/nbd2 still swap and fails, so dpkg keeps the package and the
    /// daemon; after swapoff, with an ext4 of the admin's mounted on the same device, it fails again. Once that is
    /// unmounted, removal stops every unit and the daemon; purge removes the enablement symlinks (systemctl enable's,
    /// pointing at unit files that are gone) and the configuration.
    /// </summary>
    [Fact]
    public void Removal_is_refused_while_a_zramd_device_is_swap_or_mounted_and_otherwise_stops_the_units_and_purge_leaves_nothing()
    {
        string deb = BuildPackage();
        // dpkg and what it runs (ldconfig, tar, diff must be on PATH), and the libraries the package depends on.
        VmImage image = VmImage.BuildSystemd("deb", [], ["dpkg", "libc-bin", "tar", "diffutils", "libc6", "libgcc-s1", "libstdc++6", "liblz4-1", "libzstd1"],
            deb + "=/zt/zramd.deb");
        GuestRun run = GuestRun.Start(image, "deb", socket: null, "768M", TimeSpan.FromMinutes(12),
            "systemd.journald.forward_to_console=1", "systemd.default_timeout_start_sec=600");
        output.WriteLine($"VM run: {run.Elapsed.TotalSeconds:F1} s");
        foreach ((string key, string value) in run.Values)
        {
            output.WriteLine($"{key}={value}");
        }

        run.AssertCompleted();
        Assert.True(run["install_rc"] == "0" && run["enable_rc"] == "0", "install or enable failed\n" + run.Console);
        Assert.Equal("active", run["installed.zramd.service"]);
        Assert.Equal("active", run["installed.zramd-swap.service"]);
        Assert.Equal("active", run["installed.mnt-zram.mount"]);
        Assert.Equal("0", run["own_swap_rc"]);
        Assert.True(run.Number("nbd2.used_kib") > 0, "nothing was swapped out to /dev/nbd2\n" + run.Console);

        // Refused: one line naming the device and what to do; the package, its binary, the daemon and the swap stay.
        Assert.NotEqual("0", run["remove1_rc"]);
        Assert.Matches(@"^zramd: .*/dev/nbd2 .*swapoff /dev/nbd2", run["remove1.message"]);
        // dpkg -r marked it wanted for removal, but it is still installed.
        Assert.Equal("deinstall ok installed", run["remove1.status"]);
        Assert.Equal("present", run["remove1.binary"]);
        Assert.Contains("/dev/nbd2", run["remove1.swaps"], StringComparison.Ordinal);
        Assert.Equal("yes", run["remove1.zramd_pid_same"]);
        Assert.Equal("active", run["remove1.zramd.service"]);
        // Every page swapped out to /dev/nbd2 came back as written.
        Assert.Equal("success", run["hold.result"]);
        Assert.Equal("0", run["hold.bad_pages"]);

        // The same device mounted after swapoff: refused again, naming the mount; the daemon and the file on it stay.
        Assert.Equal("0", run["own_swapoff_rc"]);
        Assert.Equal("0", run["own_mount_rc"]);
        Assert.NotEqual("0", run["remove_mounted_rc"]);
        Assert.Matches(@"^zramd: .*/dev/nbd2 is mounted on /tmp/own; umount /tmp/own", run["remove_mounted.message"]);
        Assert.Equal("deinstall ok installed", run["remove_mounted.status"]);
        Assert.Equal("yes", run["remove_mounted.zramd_pid_same"]);
        Assert.Equal("yes", run["remove_mounted.data_same"]);

        // Removed once it is unmounted and detached: the units and the daemon stopped, the devices let go.
        Assert.Equal("0", run["own_detach_rc"]);
        Assert.Equal("0", run["remove2_rc"]);
        Assert.Equal("deinstall ok config-files", run["remove2.status"]);
        foreach (string unit in (string[])["zramd.service", "zramd-swap.service", "zramd-scratch.service", "mnt-zram.mount"])
        {
            Assert.True(run["remove2." + unit] == "inactive", $"{unit} is {run["remove2." + unit]} after removal\n{run.Console}");
        }

        Assert.Equal(string.Empty, run["remove2.zramd_pids"]);
        Assert.Equal(string.Empty, run["remove2.swaps"]);
        Assert.Equal(string.Empty, run["remove2.scratch_mount"]);
        // Enablement is configuration: removal keeps it, purge takes it.
        Assert.Contains("multi-user.target.wants/zramd.service", run["remove2.links"], StringComparison.Ordinal);

        Assert.Equal("0", run["purge_rc"]);
        Assert.EndsWith("not-installed", run["purge.status"], StringComparison.Ordinal);
        Assert.Equal(string.Empty, run["purge.links"]);
        Assert.Equal("absent", run["purge.etc"]);
        Assert.Equal("absent", run["purge.var_lib"]);
        Assert.Equal(string.Empty, run["systemd.failed"]);
    }

    /// <summary>
    /// Every program a shipped unit runs (each Exec*= line's executable) is in the package, or in a package it
    /// Depends on or Recommends, or in an Essential one: an install on a machine without it would leave a unit
    /// failing (zramd.service's ExecReload names /bin/kill, which is procps's, Priority important, not Essential).
    /// The owners are the host's dpkg database's: the host is Debian 12, as the machines the package is for.
    /// </summary>
    private void AssertUnitProgramsAreProvided(string deb, string root)
    {
        ProcessResult fields = ProcessRunner.Run("dpkg-deb", ["--field", deb, "Depends", "Recommends"], TimeSpan.FromMinutes(1));
        Assert.True(fields.ExitCode == 0, fields.Describe());
        // "Depends: a, b (>= 1) | c": every name, alternatives included.
        var named = fields.StandardOutput.Split('\n')
            .Where(line => line.Contains(':', StringComparison.Ordinal))
            .SelectMany(line => line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Split([',', '|']))
            .Select(item => item.Trim().Split(' ', '(')[0])
            .Where(name => name.Length > 0)
            .ToHashSet(StringComparer.Ordinal);
        Assert.Contains("libzstd1", named);

        var programs = new SortedSet<string>(StringComparer.Ordinal);
        foreach (string unit in Directory.EnumerateFiles(Path.Combine(root, "lib", "systemd", "system")))
        {
            foreach (string line in File.ReadAllLines(unit))
            {
                Match exec = Regex.Match(line, @"^Exec[A-Za-z]*=[-@:+!]*(/\S+)");
                if (exec.Success)
                {
                    programs.Add(exec.Groups[1].Value);
                }
            }
        }

        Assert.Contains("/bin/kill", programs);
        foreach (string program in programs)
        {
            if (File.Exists(root + program))
            {
                continue;
            }

            string owner = OwningPackage(program);
            ProcessResult essential = ProcessRunner.Run("dpkg-query", ["-W", "-f=${Essential}", owner], TimeSpan.FromMinutes(1));
            output.WriteLine($"{program}: {owner}, essential: {essential.StandardOutput.Trim()}");
            Assert.True(essential.StandardOutput.Trim() == "yes" || named.Contains(owner),
                $"{program}, which a unit runs, is {owner}'s, a package that is neither Essential nor in the package's Depends or Recommends ({fields.StandardOutput.Trim()})");
        }
    }

    /// <summary>The package that holds <paramref name="program"/> on the host, under its own name or, with /usr merged,
    /// the other (dpkg records /bin/kill; the units may name /usr/bin/kill).</summary>
    private static string OwningPackage(string program)
    {
        string other = program.StartsWith("/usr/", StringComparison.Ordinal) ? program[4..] : "/usr" + program;
        foreach (string path in (string[])[program, other])
        {
            ProcessResult search = ProcessRunner.Run("dpkg-query", ["-S", path], TimeSpan.FromMinutes(1));
            // "procps: /bin/kill" (or "pkg:amd64: /path"); a diversion line starts "diversion by".
            string? hit = search.StandardOutput.Split('\n').FirstOrDefault(l => l.EndsWith(": " + path, StringComparison.Ordinal) && !l.StartsWith("diversion", StringComparison.Ordinal));
            if (search.ExitCode == 0 && hit is not null)
            {
                return hit[..hit.IndexOf(':', StringComparison.Ordinal)];
            }
        }

        Assert.Fail($"no installed package holds {program} (nor {other}) on this machine");
        return string.Empty;
    }

    /// <summary>Runs packaging/build-deb.sh on the shared publish; returns the .deb's path.</summary>
    private string BuildPackage()
    {
        ProcessResult build = ProcessRunner.Run(Path.Combine(Repository.Root, "packaging", "build-deb.sh"),
            [_work, "--publish", ZramdPublish.Directory], TimeSpan.FromMinutes(10));
        Assert.True(build.ExitCode == 0, build.Describe());
        string deb = build.StandardOutput.Trim().Split('\n')[^1];
        Assert.Matches(@"/zramd_[0-9.]+_amd64\.deb$", deb);
        return deb;
    }

    public void Dispose() => Directory.Delete(_work, recursive: true);
}
