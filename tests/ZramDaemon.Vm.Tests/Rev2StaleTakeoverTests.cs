using ZramDaemon.Vm.Tests.Harness;

namespace ZramDaemon.Vm.Tests;

/// <summary>
/// Review (rev2) of KernelNbdAttachment.TryDisconnectStale, which ZramdService.Attach calls when its connect gets
/// EBUSY: it takes a device whose /sys/block/nbdN/pid thread no longer exists, and which nothing holds open
/// exclusively, for one a dead zramd left behind, and disconnects it. But a netlink attach is made by a process that
/// exits once the kernel holds the connection: `zramd attach` itself (AttachCommand stays only for --ioctl) and
/// nbd-client. A live device another server serves, bound that way and not mounted at that moment, looks exactly
/// "stale", so a zramd started with `attach = /dev/nbdN` disconnects it and attaches its own export in its place.
/// </summary>
[Collection(VmCollection.Name)]
public sealed class Rev2StaleTakeoverTests(ITestOutputHelper output)
{
    [Fact]
    public void Daemon_start_does_not_take_a_live_device_bound_by_zramd_attach_for_a_dead_one()
    {
        VmImage image = VmImage.Build("attach-takeover",
            ZramdPublish.Executable + "=/opt/zramd/zramd",
            "/usr/lib/x86_64-linux-gnu/liblz4.so.1=/usr/lib/x86_64-linux-gnu/liblz4.so.1",
            "/usr/lib/x86_64-linux-gnu/libzstd.so.1=/usr/lib/x86_64-linux-gnu/libzstd.so.1");
        GuestRun run = GuestRun.Start(image, "attach-takeover", socket: null, "384M", TimeSpan.FromMinutes(5));
        output.WriteLine($"VM run: {run.Elapsed.TotalSeconds:F1} s; A {run["takeover.a"]}, stale-detach log lines {run["takeover.a_stale_log"]}");
        run.AssertCompleted();

        Assert.Equal(0, run.Number("takeover.b_attach_rc"));
        Assert.Equal(32L << 11, run.Number("takeover.b_nbd0_size"));
        Assert.Equal(run["takeover.b_before_written_sha256"], run["takeover.b_before_readback_sha256"]);
        Assert.True(run.Number("takeover.nbd0_size_after_a") == 32L << 11 && run["takeover.readback_after_a_sha256"] == run["takeover.b_before_written_sha256"],
            $"zramd A (attach = /dev/nbd0) took /dev/nbd0 from zramd B, whose export `zramd attach` had bound there (netlink; the attach "
            + $"process exited, so /sys/block/nbd0/pid {run["takeover.b_nbd0_pid"]} names a gone thread): size after A's start "
            + $"{run["takeover.nbd0_size_after_a"]} sectors (B's is {32L << 11}), B's pattern read back: "
            + $"{run["takeover.readback_after_a_sha256"] == run["takeover.b_before_written_sha256"]}; A logged the stale-device takeover "
            + $"{run["takeover.a_stale_log"]} time(s)\n{run.Console}");
    }
}
