using ZramDaemon.Vm.Tests.Harness;

namespace ZramDaemon.Vm.Tests;

/// <summary>`zramd attach` in the guest: a self-contained publish of zramd in the initramfs binds the export
/// to /dev/nbd0 through generic netlink (no nbd-client), swap runs on it, `zramd detach` ends it; then the
/// ioctl fallback (NBD_SET_SOCK ... NBD_DO_IT) on /dev/nbd1 carries a raw pattern.</summary>
[Collection(VmCollection.Name)]
public sealed class AttachTests(ITestOutputHelper output)
{
    // The image carries zramd (about 30 MB), so the guest needs more room than the nbd-client tests' 160 MiB.
    private const string GuestMemory = "256M";
    private const int FillMib = 224;

    [Fact]
    public void Zramd_attach_binds_the_export_for_swap_through_netlink_and_through_the_ioctl_fallback()
    {
        VmImage image = VmImage.Build("attach",
            ZramdPublish.Executable + "=/opt/zramd/zramd",
            "/usr/lib/x86_64-linux-gnu/liblz4.so.1=/usr/lib/x86_64-linux-gnu/liblz4.so.1",
            "/usr/lib/x86_64-linux-gnu/libzstd.so.1=/usr/lib/x86_64-linux-gnu/libzstd.so.1");
        output.WriteLine($"initramfs: {new FileInfo(image.Initrd).Length >> 20} MiB");
        using var zramd = ZramdServer.Start(size: "1G");
        GuestRun run = GuestRun.Start(image, "attach", zramd.Socket, GuestMemory, TimeSpan.FromMinutes(5), $"ZT_FILL_MIB={FillMib}");
        output.WriteLine($"VM run: {run.Elapsed.TotalSeconds:F1} s");

        run.AssertCompleted();
        Assert.Equal(0, run.Number("attach.netlink_rc"));
        Assert.Contains("/dev/nbd0", run["attach.netlink_output"], StringComparison.Ordinal);
        Assert.Contains("Netlink", run["attach.netlink_output"], StringComparison.Ordinal);
        Assert.Equal(1L << 30, run.Number("attach.size_bytes"));
        Assert.Equal(FillMib * 256L, run.Number("memfill.pages"));
        Assert.Equal(0, run.Number("memfill.bad_pages"));
        Assert.True(run.Number("memfill.swap_used_kib_after_fill") >= 32 * 1024, "swap was barely used\n" + run.Console);
        Assert.Equal(0, run.Number("attach.swapoff_rc"));
        Assert.Equal(0, run.Number("attach.detach_rc"));
        Assert.Equal(0, run.Number("attach.size_after_detach"));

        Assert.Contains("Ioctl", run["attach.ioctl_output"], StringComparison.Ordinal);
        Assert.Equal(run["attach.ioctl_written_sha256"], run["attach.ioctl_readback_sha256"]);
        Assert.Equal(0, run.Number("attach.ioctl_detach_rc"));
        Assert.Equal(0, run.Number("attach.ioctl_exit"));
    }
}
