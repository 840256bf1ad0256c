using System.Text.RegularExpressions;
using ZramDaemon.Vm.Tests.Harness;

namespace ZramDaemon.Vm.Tests.Systemd;

/// <summary>
/// The units in systemd/ as a user enables them, on a real kernel with the nbd driver: the guest's /init is
/// Debian 12's systemd (scripts/vm/initramfs.sh --systemd), its image holds zramd (the self-contained publish at
/// /usr/bin/zramd), the units at /usr/lib/systemd/system and the modules-load file, as the package installs them,
/// and <c>systemctl --root enable zramd.service zramd-swap.service mnt-zram.mount</c> enabled them. It boots to
/// multi-user.target; guest/systemd.sh reports what it finds (and reloads zramd) and powers off, and journald forwards everything to
/// the console, where this test reads the order in which the shutdown stopped the units.
/// </summary>
[Collection(VmCollection.Name)]
public sealed partial class UnitsUnderSystemdInTheVmTests(ITestOutputHelper output) : IDisposable
{
    private const int FillMib = 64;
    private const int FillLimitMib = 24;

    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-systemd-vm-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Zramd_swap_and_scratch_units_come_up_at_boot_reload_and_poweroff_stops_swap_and_the_mount_before_zramd()
    {
        string config = Path.Combine(_dir, "zramd.conf");
        File.WriteAllText(config, "[zram0]\nzram-size = 128M\n[zram1]\nzram-size = 64M\n");
        string units = Path.Combine(Repository.Root, "systemd");
        VmImage image = VmImage.BuildSystemd("systemd", ["zramd.service", "zramd-swap.service", "mnt-zram.mount"], [],
            ZramdPublish.Executable + "=/usr/bin/zramd",
            Path.Combine(units, "zramd.service") + "=/usr/lib/systemd/system/zramd.service",
            Path.Combine(units, "zramd-swap.service") + "=/usr/lib/systemd/system/zramd-swap.service",
            Path.Combine(units, "zramd-scratch.service") + "=/usr/lib/systemd/system/zramd-scratch.service",
            Path.Combine(units, "mnt-zram.mount") + "=/usr/lib/systemd/system/mnt-zram.mount",
            Path.Combine(units, "modules-load.conf") + "=/usr/lib/modules-load.d/zramd.conf",
            config + "=/etc/zramd/zramd.conf");
        output.WriteLine($"initramfs: {new FileInfo(image.Initrd).Length >> 20} MiB");

        // Under emulation on a loaded machine, boot may outlast systemd's 90 s default for a start job (the
        // mount's wait for /dev/nbd1 counts from early boot): a longer default, the units themselves unchanged.
        GuestRun run = GuestRun.Start(image, "systemd", socket: null, "512M", TimeSpan.FromMinutes(12),
            "systemd.journald.forward_to_console=1", "systemd.default_timeout_start_sec=600",
            $"ZT_FILL_MIB={FillMib}", $"ZT_FILL_LIMIT_MIB={FillLimitMib}");
        output.WriteLine($"VM run: {run.Elapsed.TotalSeconds:F1} s; checks began at {run["systemd.uptime"]} s of guest uptime");
        run.AssertCompleted();
        string console = run.Process.StandardOutput;

        // Booted by systemd, and nothing failed on the way.
        Assert.Equal("systemd", run["systemd.pid1"]);
        Assert.True(run["systemd.failed"].Length == 0, "failed units: " + run["systemd.failed"] + "\n" + run.Console);

        // Type=notify: active (running) only once zramd sent READY=1; its STATUS= names both devices, each with
        // the kernel's connection.
        Assert.Equal("active", run["zramd.service.ActiveState"]);
        Assert.Equal("running", run["zramd.service.SubState"]);
        Assert.Equal("0", run["zramd.NRestarts"]);
        Assert.Matches(@"^zram0: .*, 1 client; zram1: .*, 1 client$", run["zramd.StatusText"]);

        // zramd-swap.service: swap on /dev/nbd0 at priority 100, and a fill past its memory limit came back whole.
        Assert.Equal("active", run["zramd-swap.service.ActiveState"]);
        Assert.Equal("exited", run["zramd-swap.service.SubState"]);
        Assert.Matches(@"^/dev/nbd0 partition \d+ \d+ 100;$", run["swaps"]);
        Assert.Equal("/dev/nbd0 partition 100;", run["swapon_show"]);
        Assert.Equal(128L << 11, run.Number("nbd0.size"));
        Assert.Equal(0, run.Number("memfill_rc"));
        Assert.Equal(FillMib * 256L, run.Number("memfill.pages"));
        Assert.Equal(0, run.Number("memfill.bad_pages"));
        Assert.True(run.Number("memfill.swap_used_kib_after_fill") >= (FillMib - FillLimitMib - 16) * 1024L, "swap was barely used\n" + run.Console);

        // systemctl reload (ExecReload: SIGHUP): the same zramd read its configuration again, nothing in it to wait
        // for a restart, and stayed active.
        Assert.Equal("0", run["reload_rc"]);
        Assert.Equal("SIGHUP: configuration read again (/etc/zramd/zramd.conf): log-level = info, tls-mode = off; settings changed that wait for the next start: 0", run["reload.line"]);
        Assert.Equal("yes", run["reload.same_pid"]);
        Assert.Equal("active", run["reload.ActiveState"]);

        // mnt-zram.mount (through zramd-scratch.service): ext4 on /dev/nbd1 at /mnt/zram, with discard.
        Assert.Equal("active", run["zramd-scratch.service.ActiveState"]);
        Assert.Equal("active", run["mnt-zram.mount.ActiveState"]);
        Assert.Equal("mounted", run["mnt-zram.mount.SubState"]);
        Assert.StartsWith("/dev/nbd1 /mnt/zram ext4 rw,", run["scratch.mount"], StringComparison.Ordinal);
        Assert.Contains("discard", run["scratch.mount"], StringComparison.Ordinal);
        Assert.Equal(64L << 11, run.Number("nbd1.size"));
        Assert.Matches("^[0-9a-f]{64}$", run["scratch.written_sha256"]);
        Assert.Equal(run["scratch.written_sha256"], run["scratch.readback_sha256"]);

        // Poweroff: the mount, then the scratch unit (detach), and the swap unit (swapoff, detach) all finished
        // stopping before zramd's stop began; zramd found no client left and exited 0; the guest powered off.
        int unmounted = IndexOf(console, "systemd[1]: Unmounted mnt-zram.mount");
        int scratchStopped = IndexOf(console, "systemd[1]: Stopped zramd-scratch.service");
        int swapStopped = IndexOf(console, "systemd[1]: Stopped zramd-swap.service");
        int zramdStopping = IndexOf(console, "systemd[1]: Stopping zramd.service");
        Assert.True(unmounted < scratchStopped, "the scratch disk was detached before it was unmounted");
        Assert.True(scratchStopped < zramdStopping, "zramd began stopping before the scratch disk was detached");
        Assert.True(swapStopped < zramdStopping, "zramd began stopping before swap was off");
        Assert.Contains("stopping: no clients connected", console[zramdStopping..], StringComparison.Ordinal);
        Assert.True(IndexOf(console, "systemd[1]: zramd.service: Deactivated successfully") > zramdStopping);
        Assert.True(IndexOf(console, "systemd[1]: Reached target poweroff.target") > zramdStopping);
        Assert.Contains("reboot: Power down", console, StringComparison.Ordinal);

        // No unit failed on the way down, and no request to the devices failed at any time.
        Assert.DoesNotMatch(@"zramd[-\w]*\.(service|mount): (Failed|Control process exited|Main process exited, code=(?!exited, status=0))", console);
        Assert.False(IoError().IsMatch(console), "the kernel reported an I/O error\n" + run.Console);
    }

    private static int IndexOf(string console, string text)
    {
        int index = console.IndexOf(text, StringComparison.Ordinal);
        Assert.True(index >= 0, $"the console does not show '{text}'\n{console}");
        return index;
    }

    [GeneratedRegex(@"nbd\d+.*(I/O error|Connection timed out|Dead connection)|Buffer I/O error|Read-error on swap-device", RegexOptions.IgnoreCase)]
    private static partial Regex IoError();
}
