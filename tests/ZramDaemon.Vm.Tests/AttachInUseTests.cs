using ZramDaemon.Vm.Tests.Harness;

namespace ZramDaemon.Vm.Tests;

/// <summary>
/// One boot of the plain guest (scripts/vm/guest/attach-more.sh): zramd in the guest, `zramd attach` and
/// `zramd detach` where they touch devices that are in use, and the daemon's stop while swap is on one of its
/// devices. Each fact asserts one part of the same run.
/// </summary>
[Collection(VmCollection.Name)]
public sealed class AttachInUseTests(AttachInUseTests.Run run) : IClassFixture<AttachInUseTests.Run>
{
    /// <summary>
    /// `zramd attach --ioctl` stays in NBD_DO_IT for as long as the device is connected; if it dies, the kernel
    /// shuts the device's socket down (nbd_start_device_ioctl: a signal ends the wait with sock_shutdown) and swap on it
    /// loses every page. README ("Use as swap") says of nbd-client's -swap that it "makes nbd-client lock itself in
    /// memory and keep clear of the OOM killer (it matters with -nonetlink, where nbd-client stays running for as
    /// long as the device is connected)": the same holds for zramd's ioctl attach, which does neither
    /// (AttachCommand.Attach; SwapSafety.Apply runs only in the daemon), and is a .NET process of tens of MiB, an
    /// OOM killer's pick when memory runs out.
    /// </summary>
    [Fact]
    public void Ioctl_attach_that_holds_the_device_keeps_clear_of_the_OOM_killer()
    {
        GuestRun r = run.Result;
        Assert.Equal("zram1 attached to /dev/nbd2 (67108864 bytes, Ioctl)", r["more.ioctl_output"]);
        Assert.True(r.Number("more.ioctl_oom_score_adj") == -1000,
            $"the `zramd attach --ioctl` process that holds /dev/nbd2 has oom_score_adj {r["more.ioctl_oom_score_adj"]} "
            + $"(VmLck {r["more.ioctl_vmlck_kib"]} KiB of VmRSS {r["more.ioctl_vmrss_kib"]} KiB): the OOM killer may pick it, and its death disconnects the device\n{r.Console}");
        Assert.Equal(0, r.Number("more.ioctl_exit"));
    }

    /// <summary>`zramd attach NAME` with no device: the kernel picks a free /dev/nbdN (netlink) and says which in its
    /// reply, which the command prints; detach of that device works.</summary>
    [Fact]
    public void Attach_without_a_device_binds_a_free_one_and_names_it()
    {
        GuestRun r = run.Result;
        Assert.Equal(0, r.Number("more.any_rc"));
        Assert.Matches(@"^zram1 attached to /dev/nbd\d+ \(67108864 bytes, Netlink\)$", r["more.any_output"]);
        Assert.DoesNotContain("/dev/nbd0 ", r["more.any_output"], StringComparison.Ordinal);
        Assert.Equal(64L << 20, r.Number("more.any_size"));
        Assert.Equal(0, r.Number("more.any_detach_rc"));
    }

    /// <summary>
    /// `zramd detach /dev/nbd01`: there is no such device (the kernel names them nbd0, nbd1, ...), but
    /// KernelNbdAttachment.TryParseDevice parses the digits with int.TryParse, which takes leading zeros, so the verb
    /// disconnects /dev/nbd1, a device it was not asked about, with everything on it.
    /// </summary>
    [Fact]
    public void Detach_of_a_device_name_with_a_leading_zero_does_not_disconnect_another_device()
    {
        GuestRun r = run.Result;
        Assert.Equal(0, r.Number("more.nbd1_attach_rc"));
        Assert.True(r.Number("more.nbd1_size_after_detach01") > 0,
            $"`zramd detach /dev/nbd01` (exit {r["more.detach01_rc"]}: '{r["more.detach01_output"]}') disconnected /dev/nbd1\n{r.Console}");
        Assert.NotEqual(0, r.Number("more.detach01_rc"));
    }

    /// <summary>The one VM boot the facts share.</summary>
    public sealed class Run
    {
        private readonly Lazy<GuestRun> _result = new(() =>
        {
            VmImage image = VmImage.Build("attach-more",
                ZramdPublish.Executable + "=/opt/zramd/zramd",
                "/usr/lib/x86_64-linux-gnu/liblz4.so.1=/usr/lib/x86_64-linux-gnu/liblz4.so.1",
                "/usr/lib/x86_64-linux-gnu/libzstd.so.1=/usr/lib/x86_64-linux-gnu/libzstd.so.1");
            return GuestRun.Start(image, "attach-more", socket: null, "320M", TimeSpan.FromMinutes(8),
                "ZT_FILL_MIB=64", "ZT_FILL_LIMIT_MIB=24");
        });

        public GuestRun Result
        {
            get
            {
                GuestRun r = _result.Value;
                r.AssertCompleted();
                Assert.True(r.Number("more.daemon_up") > 0, "the daemon did not attach /dev/nbd0\n" + r.Console);
                return r;
            }
        }
    }
}
