using ZramDaemon.Vm.Tests.Harness;

namespace ZramDaemon.Vm.Tests;

/// <summary>
/// zramd inside the guest (a self-contained publish in the initramfs), backing the guest's own swap
/// (scripts/vm/guest/attach.sh): the daemon binds zram0 to /dev/nbd0 itself at start (<c>attach =</c>, a
/// socketpair it serves), <c>zramd attach</c> binds zram1 to /dev/nbd1 through netlink for swap, the ioctl
/// fallback carries a pattern on /dev/nbd2, and stopping the daemon detaches /dev/nbd0.
/// </summary>
[Collection(VmCollection.Name)]
public sealed class AttachTests(ITestOutputHelper output)
{
    // The daemon (about 36 MiB locked at start), its pool (about 40% of what is swapped, for this fill) and the
    // initramfs (about 60 MiB, the 30 MB zramd included, all in RAM) share the guest with the fill.
    private const string GuestMemory = "320M";
    private const int FillMib = 160;

    // The fill's memory cgroup limit: everything past it must go out to swap on /dev/nbd1.
    private const int FillLimitMib = 48;

    [Fact]
    public void Daemon_in_the_guest_attaches_itself_and_through_zramd_attach_serves_swap_and_detaches_on_stop()
    {
        VmImage image = VmImage.Build("attach",
            ZramdPublish.Executable + "=/opt/zramd/zramd",
            "/usr/lib/x86_64-linux-gnu/liblz4.so.1=/usr/lib/x86_64-linux-gnu/liblz4.so.1",
            "/usr/lib/x86_64-linux-gnu/libzstd.so.1=/usr/lib/x86_64-linux-gnu/libzstd.so.1");
        output.WriteLine($"initramfs: {new FileInfo(image.Initrd).Length >> 20} MiB");
        GuestRun run = GuestRun.Start(image, "attach", socket: null, GuestMemory, TimeSpan.FromMinutes(10),
            $"ZT_FILL_MIB={FillMib}", $"ZT_FILL_LIMIT_MIB={FillLimitMib}");
        output.WriteLine($"VM run: {run.Elapsed.TotalSeconds:F1} s; daemon ready at {run["attach.daemon_ready_uptime"]} s of guest uptime; "
            + $"swap in use after the fill: {run["memfill.swap_used_kib_after_fill"]} KiB");
        run.AssertCompleted();

        // attach = /dev/nbd0: bound at start, served over the daemon's own socketpair.
        Assert.Equal(64L << 20, run.Number("attach.config_size_bytes"));
        Assert.Matches("^[0-9a-f]{64}$", run["attach.config_written_sha256"]);
        Assert.Equal(run["attach.config_written_sha256"], run["attach.config_readback_sha256"]);
        Assert.Contains("zram0 attached to /dev/nbd0 (Netlink)", run.Process.StandardOutput, StringComparison.Ordinal);

        // zramd attach through netlink, then swap on it: every page of a fill larger than its cgroup comes back.
        Assert.Equal(0, run.Number("attach.netlink_rc"));
        Assert.Equal("zram1 attached to /dev/nbd1 (536870912 bytes, Netlink)", run["attach.netlink_output"]);
        Assert.Equal(512L << 20, run.Number("attach.size_bytes"));
        Assert.Equal(FillMib * 256L, run.Number("memfill.pages"));
        Assert.Equal(0, run.Number("memfill.bad_pages"));
        Assert.Equal(0, run.Number("attach.memfill_rc"));
        Assert.True(run.Number("memfill.swap_used_kib_after_fill") >= (FillMib - FillLimitMib - 32) * 1024L, "swap was barely used\n" + run.Console);
        // PR_SET_IO_FLUSHER on every thread of the daemon, the runtime's own threads started before Main included.
        Assert.True(run.Number("attach.daemon_threads") > 5);
        Assert.Equal("none", run["attach.daemon_threads_not_io_flusher"]);
        Assert.Equal(0, run.Number("attach.swapoff_rc"));
        Assert.Equal(0, run.Number("attach.detach_rc"));
        Assert.Equal(0, run.Number("attach.size_after_detach"));

        // The ioctl fallback: NBD_DO_IT in the foreground until zramd detach.
        Assert.Equal("zram1 attached to /dev/nbd2 (536870912 bytes, Ioctl)", run["attach.ioctl_output"]);
        Assert.Equal(run["attach.ioctl_written_sha256"], run["attach.ioctl_readback_sha256"]);
        Assert.Equal(0, run.Number("attach.ioctl_detach_rc"));
        Assert.Equal(0, run.Number("attach.ioctl_exit"));

        // swapon --discard reached the daemon; what is left on zram1 (the ioctl pattern) is stored.
        Assert.Equal(0, run.Number("attach.status_rc"));
        Dictionary<string, long> swapStats = ZramdServer.ParseStats(run["attach.status_json"], "zram1");
        Dictionary<string, long> configStats = ZramdServer.ParseStats(run["attach.status_json"], "zram0");
        output.WriteLine("zram1: " + string.Join(", ", swapStats.Select(kv => $"{kv.Key}={kv.Value}")));
        Assert.True(swapStats["discarded_pages"] > 0, "no discard reached zramd\n" + run.Console);
        Assert.True(swapStats["mem_used_max"] > 0);
        Assert.Equal(4L << 20, configStats["orig_data_size"]);

        // Stop: the daemon disconnects /dev/nbd0 itself and exits 0.
        Assert.True(run.Number("attach.nbd0_size_before_stop") > 0);
        Assert.Equal(0, run.Number("attach.daemon_exit"));
        Assert.Equal(0, run.Number("attach.nbd0_size_after_stop"));
        Assert.Contains("detached /dev/nbd0", run.Process.StandardOutput, StringComparison.Ordinal);
        Assert.DoesNotContain("CLIENT(S) CONNECTED", run.Process.StandardOutput, StringComparison.Ordinal);
    }

    /// <summary>
    /// `zramd attach --ioctl` aimed at a /dev/nbdN someone else holds must fail without touching that device
    /// (scripts/vm/guest/attach-busy.sh). NbdIoctl.Run used to answer a refused NBD_SET_SOCK with NBD_CLEAR_SOCK,
    /// which the kernel performs on whatever the device is connected to (it is allowed even on a netlink-bound
    /// device): the refused attach disconnected the device it was refused on, and everything on it (swap) was lost.
    /// </summary>
    [Fact]
    public void Refused_ioctl_attach_leaves_the_busy_device_connected()
    {
        VmImage image = VmImage.Build("attach-busy",
            ZramdPublish.Executable + "=/opt/zramd/zramd",
            "/usr/lib/x86_64-linux-gnu/liblz4.so.1=/usr/lib/x86_64-linux-gnu/liblz4.so.1",
            "/usr/lib/x86_64-linux-gnu/libzstd.so.1=/usr/lib/x86_64-linux-gnu/libzstd.so.1");
        GuestRun run = GuestRun.Start(image, "attach-busy", socket: null, GuestMemory, TimeSpan.FromMinutes(5));
        run.AssertCompleted();

        // /dev/nbd0, bound through netlink by the daemon (attach = /dev/nbd0): the ioctl attach is refused ...
        Assert.NotEqual(0, run.Number("busy.netlink_owned_attach_rc"));
        // ... and the device must still be connected with its data.
        Assert.True(run.Number("busy.nbd0_size_after") > 0, "the refused attach disconnected /dev/nbd0\n" + run.Console);
        Assert.Equal(run["busy.nbd0_before_written_sha256"], run["busy.nbd0_readback_after_sha256"]);

        // /dev/nbd2, held in NBD_DO_IT by another `zramd attach --ioctl`: refused with EBUSY ...
        Assert.NotEqual(0, run.Number("busy.ioctl_owned_attach_rc"));
        // ... and the first attachment must survive.
        Assert.True(run.Number("busy.nbd2_size_after") > 0, "the refused attach disconnected /dev/nbd2\n" + run.Console);
        Assert.Equal(1, run.Number("busy.first_attach_running"));
        Assert.Equal(run["busy.nbd2_before_written_sha256"], run["busy.nbd2_readback_after_sha256"]);
    }
}
