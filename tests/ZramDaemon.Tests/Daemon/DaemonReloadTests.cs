using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ZramDaemon.Tests.Daemon;

/// <summary>
/// SIGHUP (systemctl reload zramd) reads the configuration again: the TLS certificate, key and client authorities
/// apply to the handshakes that follow, log-level at once; any other setting that changed is a warning (it waits for the next start,
/// since a restart empties the devices); a configuration that no longer loads is one error line and changes nothing.
/// Real libnbd clients over TCP on loopback, so that they check the certificate zramd presents against its host name.
/// </summary>
public sealed class DaemonReloadTests
{
    private const string Reloaded = "SIGHUP: configuration read again";
    private const string NotReloaded = "SIGHUP: configuration not reloaded";

    [Fact]
    public void Sighup_applies_a_renewed_certificate_new_client_authorities_and_log_level_and_keeps_the_data()
    {
        int port = DaemonSocketSecurityTests.FreeTcpPort();
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(
            dir => $"[zramd]\ntls-mode = required\ntls-certificate = {WriteServerCertificate(dir, "old")}\ntls-key = {dir}/key.pem\n[zram0]\nzram-size = 16M\n",
            ["--listen", $"tcp:127.0.0.1:{port}"]);
        string dir = daemon.Directory;
        string config = Path.Combine(dir, "zramd.conf");

        // libnbd's tls-certificates directory: the server certificate it trusts as ca-cert.pem, and a client certificate.
        string Client(string name, string trustedServer, string? clientIssuer = null) =>
            $"nbds://localhost:{port}/zram0?tls-certificates={TlsConfigFile.ClientDirectory(dir, name, Path.Combine(dir, trustedServer + ".pem"), clientIssuer)}";

        bool Served(string uri) => ClientTool.Run("nbdinfo", ["--size", uri]).ExitCode == 0;

        string trustsOld = Client("old", "old");
        ClientTool.PythonNbd(trustsOld, """
            h = nbd.NBD()
            h.set_uri_allow_local_file(True)
            h.connect_uri(uri)
            h.pwrite(bytes(range(256)) * 4096, 0, nbd.CMD_FLAG_FUA)
            h.shutdown()
            """).EnsureSuccess();

        // At log-level info, connections are not logged.
        Assert.DoesNotContain(" opened", daemon.Process.StandardError, StringComparison.Ordinal);

        // A renewed certificate (a new key, at the same paths), an authority for clients, log-level debug, and a
        // setting that needs a restart.
        string renewed = WriteServerCertificate(dir, "new");
        string authority = Configuration.TestCertificate.WriteClientAuthority(Path.Combine(dir, "trusted"));
        File.WriteAllText(config, File.ReadAllText(config).Replace("[zram0]", $"tls-client-ca = {authority}\nlog-level = debug\nmax-connections = 7\n[zram0]", StringComparison.Ordinal));
        Hangup(daemon, Reloaded, 1);
        string log = daemon.Process.StandardError;
        Assert.Contains($"): log-level = debug, TLS certificate CN=localhost, valid until ", log, StringComparison.Ordinal);
        Assert.Contains($"SHA-256 {Sha256(renewed)[..16]}, client authorities: 1 from {authority}", log, StringComparison.Ordinal);
        Assert.Contains("SIGHUP: max-connections = 7 in the configuration, 256 while running: it applies at the next start", log, StringComparison.Ordinal);
        Assert.Contains("settings changed that wait for the next start: 1", log, StringComparison.Ordinal);

        // New handshakes present the renewed certificate and ask for a client certificate the authority issued.
        Assert.False(Served(Client("old-with-certificate", "old", "trusted")), "the old certificate is still presented");
        Assert.False(Served(Client("new-without-certificate", "new")), "served without a client certificate");
        string good = Client("new-with-certificate", "new", "trusted");
        ClientTool.PythonNbd(good, """
            h = nbd.NBD()
            h.set_uri_allow_local_file(True)
            h.connect_uri(uri)
            assert h.pread(1 << 20, 0) == bytes(range(256)) * 4096
            h.shutdown()
            """).EnsureSuccess();
        Assert.Contains(" opened", daemon.Process.StandardError, StringComparison.Ordinal); // debug, from the reload on

        // A configuration that no longer loads (the authorities' file gone) is one line naming the key; what runs stays.
        File.Move(authority, authority + ".gone");
        Hangup(daemon, NotReloaded, 1);
        Assert.Contains("tls-client-ca", daemon.Process.StandardError.Split('\n').Single(l => l.Contains(NotReloaded, StringComparison.Ordinal)), StringComparison.Ordinal);
        Assert.True(Served(good), "a failed reload dropped the credentials in use");
        Assert.False(Served(Client("new-without-certificate-after", "new")), "a failed reload dropped the client check");
        Assert.Equal(0, daemon.Stop());
    }

    /// <summary>Sends SIGHUP and waits for the <paramref name="count"/>th new line with <paramref name="text"/>.</summary>
    private static void Hangup(RunningDaemon daemon, string text, int count)
    {
        int before = Occurrences(daemon.Process.StandardError, text);
        using (var hup = System.Diagnostics.Process.Start("kill", ["-HUP", daemon.Process.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            hup.WaitForExit();
        }

        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (Occurrences(daemon.Process.StandardError, text) < before + count && clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            Thread.Sleep(20);
        }

        Assert.True(Occurrences(daemon.Process.StandardError, text) >= before + count, $"no '{text}' after SIGHUP; stderr:\n{daemon.Process.StandardError}");
    }

    private static int Occurrences(string log, string text) => log.Split(text).Length - 1;

    /// <summary>A self-signed server certificate for localhost written as NAME.pem, its key as key.pem (replacing
    /// the one before, as a renewal does), and copied to cert.pem, which the configuration names; returns that path.</summary>
    private static string WriteServerCertificate(string dir, string name)
    {
        string certificate = Path.Combine(dir, name + ".pem");
        TlsConfigFile.WriteCertificate(certificate, Path.Combine(dir, "key.pem"));
        File.Copy(certificate, Path.Combine(dir, "cert.pem"), overwrite: true);
        return Path.Combine(dir, "cert.pem");
    }

    private static string Sha256(string pem)
    {
        using X509Certificate2 certificate = X509Certificate2.CreateFromPem(File.ReadAllText(pem));
        return certificate.GetCertHashString(HashAlgorithmName.SHA256);
    }
}
