using ZramDaemon.Vm.Tests.Harness;

namespace ZramDaemon.Vm.Tests.Packaging;

/// <summary>
/// One boot of the systemd guest with dpkg (scripts/vm/guest/deb-keep.sh): the package installed, zramd,
/// zramd-swap.service and mnt-zram.mount enabled and holding a process's swapped pages and a file, an upgrade to a
/// higher version of the same package, then a removal that prerm refuses. Each fact asserts one part of the run.
/// </summary>
[Collection(VmCollection.Name)]
public sealed class DebianUpgradeAndRefusedRemovalTests(DebianUpgradeAndRefusedRemovalTests.Run run) : IClassFixture<DebianUpgradeAndRefusedRemovalTests.Run>
{
    /// <summary>
    /// README ("Install"): "An upgrade restarts nothing (a restart would swap off and empty the scratch disk)". The
    /// upgrade (old prerm upgrade, new postinst configure) leaves the daemon (same PID), swap on /dev/nbd0 with the
    /// process's pages (all read back intact), the scratch disk's file and the admin's edited conffile as they were.
    /// </summary>
    [Fact]
    public void Upgrade_restarts_nothing_and_keeps_swap_scratch_and_the_edited_config()
    {
        GuestRun r = run.Result;
        Assert.True(r.Number("nbd0.used_kib") > 0, "nothing was swapped out to /dev/nbd0\n" + r.Console);
        Assert.Equal("0", r["upgrade_rc"]);
        Assert.Equal($"install ok installed {run.NextVersion}", r["upgrade.status"]);
        Assert.Equal("yes", r["upgrade.zramd_pid_same"]);
        foreach (string unit in (string[])["zramd.service", "zramd-swap.service", "mnt-zram.mount"])
        {
            Assert.True(r["upgrade." + unit] == "active", $"{unit} is {r["upgrade." + unit]} after the upgrade\n{r.Console}");
        }

        Assert.Equal("/dev/nbd0", r["upgrade.swaps"]);
        Assert.True(r.Number("upgrade.nbd0_used_kib") > 0, "the swapped pages were brought back in by the upgrade\n" + r.Console);
        Assert.Equal("yes", r["upgrade.scratch_same"]);
        Assert.Equal("yes", r["upgrade.conf_same"]);
        Assert.Equal("success", r["hold.result"]);
        Assert.Equal("0", r["hold.bad_pages"]);
    }

    /// <summary>
    /// `dpkg -r zramd` while the admin's own swap is on /dev/nbd2: prerm refuses ("zramd: not removed ...") and dpkg
    /// keeps the package, but packaging/debian/prerm first runs `systemctl stop mnt-zram.mount zramd-scratch.service
    /// zramd-swap.service` and only then looks for devices in use; postinst abort-remove starts the enabled units again,
    /// and zramd-scratch.service formats /dev/nbd1 afresh. The refused removal has emptied the scratch disk: the
    /// admin's files in /mnt/zram are gone although the removal "leaves zramd running" (README "Install"). The admin's
    /// swap on /dev/nbd2 was known before anything was stopped.
    /// </summary>
    [Fact]
    public void Refused_removal_keeps_the_files_on_the_scratch_disk()
    {
        GuestRun r = run.Result;
        Assert.Equal("0", r["own_swap_rc"]);
        Assert.NotEqual("0", r["remove_rc"]);
        Assert.Matches(@"^zramd: .*/dev/nbd2 .*swapoff /dev/nbd2", r["remove.message"]);
        Assert.StartsWith("deinstall ok installed", r["remove.status"], StringComparison.Ordinal);
        Assert.Equal("yes", r["remove.zramd_pid_same"]);
        Assert.Equal("active", r["remove.mnt-zram.mount"]);
        Assert.True(r["remove.scratch_same"] == "yes",
            $"the refused removal emptied the scratch disk: /mnt/zram holds '{r["remove.scratch_files"]}' instead of the file written there (prerm stops mnt-zram.mount before it looks for devices in use)\n{r.Console}");
    }

    /// <summary>The one VM boot the facts share.</summary>
    public sealed class Run : IDisposable
    {
        private readonly string _work = Directory.CreateTempSubdirectory("zramd-deb-keep-").FullName;
        private readonly Lazy<GuestRun> _result;

        public Run() => _result = new Lazy<GuestRun>(Boot);

        public string NextVersion { get; private set; } = string.Empty;

        public GuestRun Result
        {
            get
            {
                GuestRun r = _result.Value;
                r.AssertCompleted();
                Assert.True(r["install_rc"] == "0" && r["enable_rc"] == "0" && r["scratch_write_rc"] == "0", "install, enable or the scratch file failed\n" + r.Console);
                return r;
            }
        }

        public void Dispose() => Directory.Delete(_work, recursive: true);

        private GuestRun Boot()
        {
            ProcessResult build = ProcessRunner.Run(Path.Combine(Repository.Root, "packaging", "build-deb.sh"),
                [_work, "--publish", ZramdPublish.Directory], TimeSpan.FromMinutes(10));
            Assert.True(build.ExitCode == 0, build.Describe());
            string deb = build.StandardOutput.Trim().Split('\n')[^1];

            // The same package with a higher version: what an upgrade installs.
            string tree = Path.Combine(_work, "next");
            ProcessResult raw = ProcessRunner.Run("dpkg-deb", ["-R", deb, tree], TimeSpan.FromMinutes(2));
            Assert.True(raw.ExitCode == 0, raw.Describe());
            string control = Path.Combine(tree, "DEBIAN", "control");
            string version = File.ReadAllLines(control).Single(l => l.StartsWith("Version: ", StringComparison.Ordinal))["Version: ".Length..];
            NextVersion = version + "+next1";
            File.WriteAllText(control, File.ReadAllText(control).Replace("Version: " + version, "Version: " + NextVersion, StringComparison.Ordinal));
            string next = Path.Combine(_work, "zramd-next.deb");
            ProcessResult rebuild = ProcessRunner.Run("dpkg-deb", ["--root-owner-group", "-Zgzip", "--build", tree, next], TimeSpan.FromMinutes(5));
            Assert.True(rebuild.ExitCode == 0, rebuild.Describe());

            VmImage image = VmImage.BuildSystemd("deb-keep", [], ["dpkg", "libc-bin", "tar", "diffutils", "libc6", "libgcc-s1", "libstdc++6", "liblz4-1", "libzstd1"],
                deb + "=/zt/zramd.deb", next + "=/zt/zramd-next.deb");
            return GuestRun.Start(image, "deb-keep", socket: null, "768M", TimeSpan.FromMinutes(12),
                "systemd.journald.forward_to_console=1", "systemd.default_timeout_start_sec=600");
        }
    }
}
