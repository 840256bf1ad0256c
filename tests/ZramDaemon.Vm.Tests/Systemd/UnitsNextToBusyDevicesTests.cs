using ZramDaemon.Vm.Tests.Harness;

namespace ZramDaemon.Vm.Tests.Systemd;

/// <summary>
/// One boot of the systemd guest (scripts/vm/guest/units-busy.sh) with only zramd.service enabled, the units of
/// systemd/ installed as the package installs them, and /dev/nbd0, /dev/nbd1 and /dev/nbd2 used by the admin
/// (zramd attach of exports of their own): the units and `zramd detach` must never take away a device they did not
/// attach, or one that is in use. Each fact asserts one part of the same run.
/// </summary>
[Collection(VmCollection.Name)]
public sealed class UnitsNextToBusyDevicesTests(UnitsNextToBusyDevicesTests.Run run) : IClassFixture<UnitsNextToBusyDevicesTests.Run>
{
    /// <summary>
    /// /dev/nbd0 holds the admin's own mounted ext4 (another export). `systemctl start zramd-swap.service` fails at
    /// its first ExecStart (`zramd attach zram0 /dev/nbd0`: EBUSY), and systemd then runs ExecStopPost= (systemd.service(5):
    /// "also ... if the service failed to start up"): `grep -q "^/dev/nbd0 " /proc/swaps || zramd detach /dev/nbd0`
    /// (systemd/zramd-swap.service). /dev/nbd0 is not swap, so the guard lets the detach through and the unit
    /// disconnects a device it never attached, under a mounted filesystem.
    /// </summary>
    [Fact]
    public void Failed_start_of_zramd_swap_service_leaves_the_mounted_device_it_did_not_attach_connected()
    {
        GuestRun r = run.Result;
        Assert.Equal("0", r["own_mount_rc"]);
        // The start is refused (the device is in use) ...
        Assert.NotEqual("0", r["busy_mount.start_rc"]);
        Assert.Equal("yes", r["busy_mount.still_mounted"]);
        // ... and must leave the admin's device and filesystem as they were. (A detached device keeps its size while
        // a mount holds it open; its reads fail.)
        Assert.True(r["busy_mount.read_rc"] == "0" && r["busy_mount.data_same"] == "yes",
            $"the failed start of zramd-swap.service disconnected /dev/nbd0, which it did not attach and which holds a mounted ext4 (ExecStopPost's `zramd detach` after the refused attach): a direct read of /dev/nbd0 {(r["busy_mount.read_rc"] == "0" ? "works" : "fails")}, the file on the ext4 reads back {(r["busy_mount.data_same"] == "yes" ? "intact" : "wrong or not at all")}\n" + r.Console);
    }

    /// <summary>
    /// /dev/nbd1 holds the admin's own active swap (another export). `systemctl start mnt-zram.mount` starts
    /// zramd-scratch.service, whose `zramd attach zram1 /dev/nbd1` fails (EBUSY); its ExecStopPost= then runs
    /// `grep -q "^/dev/nbd1 " /proc/mounts || zramd detach /dev/nbd1` (systemd/zramd-scratch.service), which only
    /// spares a mounted device: swap is detached, and every page swapped out there is lost.
    /// </summary>
    [Fact]
    public void Failed_start_of_zramd_scratch_service_leaves_the_swap_device_it_did_not_attach_connected()
    {
        GuestRun r = run.Result;
        Assert.Equal("0", r["own_swap_rc"]);
        Assert.NotEqual("0", r["busy_swap.start_rc"]);
        Assert.Contains("/dev/nbd1", r["busy_swap.swaps"], StringComparison.Ordinal);
        Assert.True(r["busy_swap.read_rc"] == "0",
            "the failed start of zramd-scratch.service (through mnt-zram.mount) disconnected /dev/nbd1, which it did not attach and which is active swap (ExecStopPost checks /proc/mounts only): a direct read of /dev/nbd1 fails\n" + r.Console);
    }

    /// <summary>
    /// `zramd detach /dev/nbd2` while /dev/nbd2 is active swap: KernelNbdAttachment.Detach sends NBD_CMD_DISCONNECT
    /// without asking whether the device is in use, so the swap area loses its disk and every page on it. The
    /// kernel says whether a block device is in use: an O_EXCL open fails with EBUSY while it is swap or mounted
    /// (open(2)); zram's own reset_store refuses an open device with EBUSY, and zramd's `reset` refuses while a
    /// client is connected. The units (ExecStopPost) and prerm guard against exactly this; the verb does not.
    /// </summary>
    [Fact]
    public void Zramd_detach_refuses_a_device_that_is_active_swap()
    {
        GuestRun r = run.Result;
        Assert.Equal("0", r["own_swap2_rc"]);
        Assert.True(r["detach_swap.rc"] != "0",
            "zramd detach /dev/nbd2 succeeded while /dev/nbd2 was active swap: " + r["detach_swap.output"] + "\n" + r.Console);
        Assert.True(r["detach_swap.read_rc"] == "0", "/dev/nbd2 was disconnected while it was active swap: a direct read of it fails\n" + r.Console);
    }

    /// <summary>
    /// `systemctl restart zramd.service` while zramd-swap.service and mnt-zram.mount are active: BindsTo= propagates
    /// the restart, After= orders swapoff and umount before zramd stops and the attaches after it is ready again, so
    /// all of them are active afterwards, with swap on /dev/nbd0 and the scratch disk mounted.
    /// </summary>
    [Fact]
    public void Restart_of_zramd_service_restarts_its_swap_and_scratch_units_with_it()
    {
        GuestRun r = run.Result;
        Assert.Equal("0", r["start_units_rc"]);
        Assert.Equal("active", r["before_restart.zramd-swap.service"]);
        Assert.Equal("active", r["before_restart.mnt-zram.mount"]);
        Assert.Equal("0", r["restart_rc"]);
        Assert.Equal("yes", r["after_restart.pid_changed"]);
        foreach (string unit in (string[])["zramd.service", "zramd-swap.service", "zramd-scratch.service", "mnt-zram.mount"])
        {
            Assert.True(r["after_restart." + unit] == "active", $"{unit} is {r["after_restart." + unit]} after systemctl restart zramd.service\n{r.Console}");
        }

        Assert.Equal("/dev/nbd0", r["after_restart.swaps"]);
        Assert.Equal("/dev/nbd1 /mnt/zram ext4", r["after_restart.scratch_mount"]);
        // Stopped cleanly afterwards: both devices detached.
        Assert.Equal("0", r["stop_units_rc"]);
        Assert.Equal(0, r.Number("clean.nbd0_size"));
        Assert.Equal(0, r.Number("clean.nbd1_size"));
    }

    /// <summary>The one VM boot the facts share.</summary>
    public sealed class Run : IDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("zramd-units-busy-").FullName;
        private readonly Lazy<GuestRun> _result;

        public Run() => _result = new Lazy<GuestRun>(Boot);

        public GuestRun Result
        {
            get
            {
                GuestRun r = _result.Value;
                r.AssertCompleted();
                Assert.Equal("active", r["boot.zramd"]);
                return r;
            }
        }

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        private GuestRun Boot()
        {
            string config = Path.Combine(_dir, "zramd.conf");
            File.WriteAllText(config, "[zram0]\nzram-size = 128M\n[zram1]\nzram-size = 64M\n[zram2]\nzram-size = 64M\n[zram3]\nzram-size = 64M\n[zram4]\nzram-size = 64M\n");
            string units = Path.Combine(Repository.Root, "systemd");
            VmImage image = VmImage.BuildSystemd("units-busy", ["zramd.service"], [],
                ZramdPublish.Executable + "=/usr/bin/zramd",
                Path.Combine(units, "zramd.service") + "=/usr/lib/systemd/system/zramd.service",
                Path.Combine(units, "zramd-swap.service") + "=/usr/lib/systemd/system/zramd-swap.service",
                Path.Combine(units, "zramd-scratch.service") + "=/usr/lib/systemd/system/zramd-scratch.service",
                Path.Combine(units, "mnt-zram.mount") + "=/usr/lib/systemd/system/mnt-zram.mount",
                Path.Combine(units, "modules-load.conf") + "=/usr/lib/modules-load.d/zramd.conf",
                config + "=/etc/zramd/zramd.conf");
            return GuestRun.Start(image, "units-busy", socket: null, "512M", TimeSpan.FromMinutes(12),
                "systemd.journald.forward_to_console=1", "systemd.default_timeout_start_sec=600");
        }
    }
}
