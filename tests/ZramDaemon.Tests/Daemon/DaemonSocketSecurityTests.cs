using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace ZramDaemon.Tests.Daemon;

/// <summary>The real daemon's safe defaults: who may open its sockets, and the warning for TCP reachable from
/// other hosts without TLS.</summary>
public sealed class DaemonSocketSecurityTests
{
    private const string ExposedWarning = "which is not loopback";

    /// <summary>Mode (octal digits) and group id of a file, from stat(1).</summary>
    private static (string Mode, uint Group) Stat(string path)
    {
        string[] words = ClientTool.Run("stat", ["-c", "%a %g", path]).EnsureSuccess().Stdout.Split(' ', StringSplitOptions.TrimEntries);
        return (words[0], uint.Parse(words[1], CultureInfo.InvariantCulture));
    }

    private static uint? GroupId(string name) => File.ReadLines("/etc/group")
        .Select(line => line.Split(':'))
        .Where(f => f.Length >= 3 && f[0] == name)
        .Select(f => (uint?)uint.Parse(f[2], CultureInfo.InvariantCulture))
        .FirstOrDefault();

    internal static int FreeTcpPort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    [Fact]
    public void By_default_the_nbd_socket_is_0660_group_disk_and_the_control_socket_0600()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"]);
        (string mode, uint group) = Stat(daemon.Socket);
        Assert.Equal("660", mode);
        Assert.Equal("600", Stat(daemon.ControlPath).Mode);

        // The daemon may give the socket to disk with CAP_CHOWN (bit 0 of CapEff; it inherits ours) or as a member.
        uint? disk = GroupId("disk");
        string status = File.ReadAllText("/proc/self/status");
        bool canChown = (ulong.Parse(status.Split('\n').Single(l => l.StartsWith("CapEff:", StringComparison.Ordinal))[7..].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture) & 1) != 0;
        bool member = disk is not null && status.Split('\n').Any(l => l.StartsWith("Groups:", StringComparison.Ordinal) && l.Split(' ', '\t').Contains(disk.Value.ToString(CultureInfo.InvariantCulture)));
        if (disk is not null && (canChown || member))
        {
            Assert.Equal(disk.Value, group);
            Assert.DoesNotContain("keep zramd's own group", daemon.Process.StandardError, StringComparison.Ordinal);
        }
        else
        {
            // No disk group, or no right to give files to it: our own group, and the log says why.
            Assert.Contains("the NBD sockets keep zramd's own group instead of the default 'disk'", daemon.Process.StandardError, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Socket_group_and_mode_from_the_environment_are_applied()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"], new Dictionary<string, string>
        {
            ["ZRAMD_SOCKET_GROUP"] = "0",
            ["ZRAMD_SOCKET_MODE"] = "0600",
        });
        Assert.Equal(("600", 0u), Stat(daemon.Socket));
    }

    /// <summary>A group name reaches the socket as the id NSS gives (getent), looked up once by the loader.</summary>
    [Fact]
    public void A_socket_group_name_gives_the_socket_the_id_getent_gives()
    {
        uint disk = uint.Parse(ClientTool.Run("getent", ["group", "disk"]).EnsureSuccess().Stdout.Split(':')[2], CultureInfo.InvariantCulture);
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"], new Dictionary<string, string> { ["ZRAMD_SOCKET_GROUP"] = "disk" });
        Assert.Equal(disk, Stat(daemon.Socket).Group);
    }

    [Fact]
    public void Tcp_on_a_non_loopback_address_without_tls_is_warned_about_and_loopback_is_not()
    {
        // Bound for a moment only; no traffic is sent to it.
        using (RunningDaemon exposed = RunningDaemon.Start(["--size", "16M", "--listen", $"tcp:0.0.0.0:{FreeTcpPort()}"]))
        {
            string log = exposed.Process.StandardError;
            Assert.Contains("listening on tcp:0.0.0.0:", log, StringComparison.Ordinal);
            Assert.Contains($"{ExposedWarning}, and TLS is off", log, StringComparison.Ordinal);
            Assert.Single(log.Split('\n'), line => line.Contains(ExposedWarning, StringComparison.Ordinal));
        }

        using RunningDaemon loopback = RunningDaemon.Start(["--size", "16M", "--listen", $"tcp:127.0.0.1:{FreeTcpPort()}"]);
        Assert.DoesNotContain(ExposedWarning, loopback.Process.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public void Socket_activated_tcp_on_a_non_loopback_address_without_tls_is_warned_about_and_loopback_is_not()
    {
        string dir = Directory.CreateTempSubdirectory("zramd-e2e-").FullName;
        try
        {
            int exposedPort = FreeTcpPort();
            int loopbackPort = FreeTcpPort();
            using var activator = SocketActivator.Start(
                [$"0.0.0.0:{exposedPort}", $"127.0.0.1:{loopbackPort}"], dir, ["--size", "16M", "--control", Path.Combine(dir, "zramd.ctl")]);

            // zramd starts with the first client (queued meanwhile) and serves it on the loopback socket.
            string uri = $"nbd://127.0.0.1:{loopbackPort}/zram0";
            ClientTool.Result size = default!;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while ((size = ClientTool.Run("nbdinfo", ["--size", uri])).ExitCode != 0 && clock.Elapsed < TimeSpan.FromSeconds(30))
            {
                Thread.Sleep(100); // the activator may not be listening yet
            }

            Assert.Equal((16L << 20).ToString(CultureInfo.InvariantCulture), size.EnsureSuccess().Stdout.Trim());
            Assert.Equal(0, activator.Stop());
            string[] warnings = activator.Log.Split('\n').Where(l => l.Contains(ExposedWarning, StringComparison.Ordinal)).ToArray();
            Assert.Single(warnings);
            Assert.Contains($"listening on tcp:0.0.0.0:{exposedPort} (systemd), {ExposedWarning}, and TLS is off", warnings[0], StringComparison.Ordinal);
            Assert.Contains("socket activation: serving the 2 socket(s) systemd passed", activator.Log, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Tcp_on_a_non_loopback_address_with_tls_required_is_not_warned_about()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(TlsConfigFile.Required, ["--listen", $"tcp:0.0.0.0:{FreeTcpPort()}"]);
        Assert.Contains("tls-mode = required", daemon.Process.StandardError, StringComparison.Ordinal);
        Assert.Contains("tcp:0.0.0.0:", daemon.Process.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain(ExposedWarning, daemon.Process.StandardError, StringComparison.Ordinal);
        // The start line's commands attach with TLS, which is all this daemon speaks.
        string start = daemon.Process.StandardError.Split('\n').Single(l => l.Contains("attach with:", StringComparison.Ordinal));
        Assert.True(start.Contains("/dev/nbd0 -N zram0 -b 4096 -enable-tls", StringComparison.Ordinal) && start.Contains("nbdinfo 'nbds+unix:///zram0?socket=", StringComparison.Ordinal), start);
    }

    /// <summary>
    /// tls-client-ca reaches the daemon's server: a libnbd client presenting a certificate that authority issued is
    /// served; one with none, or one from another authority, is refused at the TLS handshake.
    /// </summary>
    [Fact]
    public void With_tls_client_ca_only_clients_with_a_certificate_it_issued_are_served()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(dir => TlsConfigFile.Required(dir).Replace(
            "[zram0]", $"tls-client-ca = {Configuration.TestCertificate.WriteClientAuthority(Path.Combine(dir, "trusted"))}\n[zram0]", StringComparison.Ordinal));
        Assert.Contains("tls-mode = required, tls-client-ca = ", daemon.Process.StandardError, StringComparison.Ordinal);
        Configuration.TestCertificate.WriteClientAuthority(Path.Combine(daemon.Directory, "foreign"));

        // libnbd's directory: the server's certificate as ca-cert.pem and, but for "none", a client certificate and key.
        string Uri(string name, string? issuer) =>
            $"nbds+unix:///zram0?socket={daemon.Socket}&tls-certificates={TlsConfigFile.ClientDirectory(daemon.Directory, name, Path.Combine(daemon.Directory, "cert.pem"), issuer)}";

        string good = Uri("good", "trusted");
        Assert.Equal("16777216", ClientTool.Run("nbdinfo", ["--size", good]).EnsureSuccess().Stdout.Trim());
        foreach (string refused in new[] { Uri("none", null), Uri("foreign", "foreign") })
        {
            Assert.NotEqual(0, ClientTool.Run("nbdinfo", ["--size", refused]).ExitCode);
        }

        Assert.Equal("16777216", ClientTool.Run("nbdinfo", ["--size", good]).EnsureSuccess().Stdout.Trim());
    }
}
