using ZramDaemon.Vm.Tests.Harness;

namespace ZramDaemon.Vm.Tests.Systemd;

/// <summary>
/// systemd/zramd.service with <c>attach = /dev/nbd0</c> in /etc/zramd/zramd.conf (scripts/vm/guest/units-attach.sh):
/// the daemon binds its device from inside the unit's sandbox and lets go of it when the unit stops.
/// </summary>
[Collection(VmCollection.Name)]
public sealed class ZramdServiceAttachTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-units-attach-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Zramd_service_attaches_its_device_inside_the_sandbox_and_detaches_it_at_stop()
    {
        string config = Path.Combine(_dir, "zramd.conf");
        File.WriteAllText(config, "[zram0]\nzram-size = 64M\nattach = /dev/nbd0\n");
        string units = Path.Combine(Repository.Root, "systemd");
        VmImage image = VmImage.BuildSystemd("units-attach", ["zramd.service"], [],
            ZramdPublish.Executable + "=/usr/bin/zramd",
            Path.Combine(units, "zramd.service") + "=/usr/lib/systemd/system/zramd.service",
            Path.Combine(units, "modules-load.conf") + "=/usr/lib/modules-load.d/zramd.conf",
            config + "=/etc/zramd/zramd.conf");
        GuestRun run = GuestRun.Start(image, "units-attach", socket: null, "512M", TimeSpan.FromMinutes(10),
            "systemd.journald.forward_to_console=1", "systemd.default_timeout_start_sec=600");
        output.WriteLine($"VM run: {run.Elapsed.TotalSeconds:F1} s");
        run.AssertCompleted();

        Assert.True(run["ua.zramd"] == "active" && run.Number("ua.nbd0_size") == 64L << 11,
            $"zramd.service with attach = /dev/nbd0 is {run["ua.zramd"]} ({run["ua.result"]}), /dev/nbd0 has {run["ua.nbd0_size"]} sectors\n{run.Console}");
        Assert.Equal("0", run["ua.nrestarts"]);
        Assert.Equal(run["ua.written_sha256"], run["ua.readback_sha256"]);
        Assert.Equal("0", run["ua.stop_rc"]);
        Assert.Equal("inactive", run["ua.after_stop"]);
        Assert.Equal("success", run["ua.after_stop_result"]);
        Assert.Equal(0, run.Number("ua.nbd0_size_after_stop"));
    }
}
