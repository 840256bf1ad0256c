using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ZramDaemon.Vm.Tests.Harness;

namespace ZramDaemon.Vm.Tests;

/// <summary>
/// The daemon's own <c>attach = /dev/nbdN</c> (ZramdService.Attach at start, DetachAllAsync at stop), in the guest.
/// </summary>
[Collection(VmCollection.Name)]
public sealed class DaemonOwnAttachTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-own-attach-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// The daemon's own attach (ZramdService.Attach) is a socketpair that never leaves the process: one end is served
    /// by the daemon's NBD server, the other negotiated in userspace and handed to the kernel's nbd driver, which
    /// speaks no TLS. The server applies <c>tls-mode = required</c> to that socketpair as to a listener
    /// (NbdHandshake: NBD_REP_ERR_TLS_REQD to every option before STARTTLS), so the daemon refuses its own attach and
    /// the start fails ("[zram0] attach = /dev/nbd0: the server refused export 'zram0' (NBD_REP_ERR 0x80000005): TLS
    /// is required"). tls-mode = required is what zramd's own warning tells an admin with a TCP listener off
    /// loopback to set; the configuration check accepts the combination, and the daemon then cannot start.
    /// </summary>
    [Fact]
    public void Daemon_with_tls_required_still_attaches_its_own_device()
    {
        using var key = ECDsa.Create();
        var request = new CertificateRequest("CN=zramd-vm-test", key, HashAlgorithmName.SHA256);
        using X509Certificate2 certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        string cert = Path.Combine(_dir, "cert.pem"), keyPath = Path.Combine(_dir, "key.pem");
        File.WriteAllText(cert, certificate.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());

        VmImage image = VmImage.Build("attach-tls",
            ZramdPublish.Executable + "=/opt/zramd/zramd",
            "/usr/lib/x86_64-linux-gnu/liblz4.so.1=/usr/lib/x86_64-linux-gnu/liblz4.so.1",
            "/usr/lib/x86_64-linux-gnu/libzstd.so.1=/usr/lib/x86_64-linux-gnu/libzstd.so.1",
            "/usr/lib/x86_64-linux-gnu/libssl.so.3=/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "/usr/lib/x86_64-linux-gnu/libcrypto.so.3=/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
            cert + "=/etc/zramd/cert.pem",
            keyPath + "=/etc/zramd/key.pem");
        GuestRun run = GuestRun.Start(image, "attach-tls", socket: null, "320M", TimeSpan.FromMinutes(5));
        output.WriteLine($"VM run: {run.Elapsed.TotalSeconds:F1} s; `zramd attach` over the Unix socket: rc {run["tls.attach_rc"]}, {run["tls.attach_output"]}");
        run.AssertCompleted();

        Assert.True(run["tls.daemon"] == "running" && run.Number("tls.nbd0_size") > 0,
            $"with tls-mode = required the daemon did not attach its own /dev/nbd0 (daemon {run["tls.daemon"]}: {run["tls.daemon_error"]})\n{run.Console}");
        Assert.Equal(run["tls.nbd0_written_sha256"], run["tls.nbd0_readback_sha256"]);
    }

    /// <summary>
    /// scripts/vm/guest/attach-reuse.sh: zramd A attached /dev/nbd0 itself (attach =); the admin detaches it
    /// (`zramd detach /dev/nbd0`, README: "disconnect a kernel NBD device") and binds /dev/nbd0 to another server
    /// (zramd B). When A stops, KernelNbdAttachment.Dispose sends NBD_CMD_DISCONNECT for index 0 without asking whether
    /// the device is still bound to A's socketpair (its served connection had ended long before: Serving completed),
    /// so A's stop disconnects B's device, a device A no longer has anything to do with.
    /// </summary>
    [Fact]
    public void Daemon_stop_does_not_detach_a_device_another_server_holds_since()
    {
        VmImage image = VmImage.Build("attach-reuse",
            ZramdPublish.Executable + "=/opt/zramd/zramd",
            "/usr/lib/x86_64-linux-gnu/liblz4.so.1=/usr/lib/x86_64-linux-gnu/liblz4.so.1",
            "/usr/lib/x86_64-linux-gnu/libzstd.so.1=/usr/lib/x86_64-linux-gnu/libzstd.so.1");
        GuestRun run = GuestRun.Start(image, "attach-reuse", socket: null, "384M", TimeSpan.FromMinutes(5));
        output.WriteLine($"VM run: {run.Elapsed.TotalSeconds:F1} s");
        run.AssertCompleted();

        Assert.True(run.Number("reuse.a_nbd0_size") > 0, "zramd A did not attach /dev/nbd0\n" + run.Console);
        Assert.Equal(0, run.Number("reuse.detach_rc"));
        Assert.Equal(0, run.Number("reuse.nbd0_size_after_detach"));
        Assert.Equal(0, run.Number("reuse.b_attach_rc"));
        Assert.Equal(32L << 11, run.Number("reuse.b_nbd0_size"));
        Assert.Equal(run["reuse.b_before_written_sha256"], run["reuse.b_before_readback_sha256"]);
        Assert.Equal(0, run.Number("reuse.a_exit"));
        Assert.True(run.Number("reuse.nbd0_size_after_a_stop") > 0 && run.Number("reuse.read_after_a_stop_rc") == 0,
            "zramd A's stop disconnected /dev/nbd0, which zramd B held by then (A's own attachment had been detached before)\n" + run.Console);
        Assert.Equal(run["reuse.b_before_written_sha256"], run["reuse.readback_after_a_stop_sha256"]);
    }

    /// <summary>
    /// scripts/vm/guest/attach-crash.sh: zramd with <c>attach = /dev/nbd0</c> is killed (a crash, the OOM killer), and
    /// started again with the same configuration, which is what systemd/zramd.service's Restart=on-failure does. The
    /// kernel keeps the netlink-made configuration of /dev/nbd0 (its socket dead) until someone sends
    /// NBD_CMD_DISCONNECT, so the new daemon's NBD_CMD_CONNECT gets EBUSY ("nbd0 already in use") and the start fails,
    /// every time: Restart=on-failure gives up after its burst, and zramd, with every other export it serves, stays
    /// down until an admin runs `zramd detach /dev/nbd0` by hand. What the dead device held is lost either way; a device
    /// that is not swap or mounted can be disconnected and attached again (or NBD_CMD_RECONFIGURE'd).
    /// </summary>
    [Fact]
    public void Daemon_restarted_after_a_crash_attaches_its_device_again()
    {
        VmImage image = VmImage.Build("attach-crash",
            ZramdPublish.Executable + "=/opt/zramd/zramd",
            "/usr/lib/x86_64-linux-gnu/liblz4.so.1=/usr/lib/x86_64-linux-gnu/liblz4.so.1",
            "/usr/lib/x86_64-linux-gnu/libzstd.so.1=/usr/lib/x86_64-linux-gnu/libzstd.so.1");
        GuestRun run = GuestRun.Start(image, "attach-crash", socket: null, "320M", TimeSpan.FromMinutes(5));
        output.WriteLine($"VM run: {run.Elapsed.TotalSeconds:F1} s");
        run.AssertCompleted();

        Assert.True(run.Number("crash.first_nbd0_size") > 0, "the first daemon did not attach /dev/nbd0\n" + run.Console);
        Assert.True(run["crash.second"] == "running",
            $"zramd started again after a crash did not come up (it {run["crash.second"]}: {run["crash.second_error"]}): /dev/nbd0 stays bound to the dead daemon's socket\n{run.Console}");
        Assert.Equal("0", run["crash.write_rc"]);
        Assert.Equal(run["crash.written_sha256"], run["crash.readback_sha256"]);
    }
}
