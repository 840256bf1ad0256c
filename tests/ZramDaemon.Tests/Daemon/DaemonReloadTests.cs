using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;

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

        // tls-mode itself changes only at a restart: the line says the mode in force, a warning the one that waits.
        File.WriteAllText(config, File.ReadAllText(config)
            .Replace("tls-mode = required", "tls-mode = optional", StringComparison.Ordinal)
            .Replace($"tls-client-ca = {authority}\n", string.Empty, StringComparison.Ordinal));
        Hangup(daemon, Reloaded, 1);
        Assert.Contains("log-level = debug, tls-mode = required;", LastLine(daemon, Reloaded), StringComparison.Ordinal);
        Assert.Contains("SIGHUP: tls-mode = optional in the configuration, required while running", daemon.Process.StandardError, StringComparison.Ordinal);
        Assert.True(Served(good), "a tls-mode change applied without a restart");
        Assert.Equal(0, daemon.Stop());
    }

    /// <summary>
    /// A device's zram-resident-limit, compression-algorithm and writeback-limit changed in the file apply on reload,
    /// as `zramd set` applies mem_limit, comp_algorithm and writeback_limit; one the file did not change keeps what
    /// `zramd set` gave it; one `zramd set` refuses is an error line and waits for the next start; one the start's
    /// checks refuse leaves the configuration unloaded. The stored data stays readable throughout.
    /// </summary>
    [Fact]
    public void Sighup_applies_the_device_settings_zramd_set_changes_when_the_file_changed_them()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(dir =>
            $"[zram0]\nzram-size = 16M\nzram-resident-limit = 8M\nwriteback-file = {dir}/zram0.wb\nwriteback-limit = 1M\n");
        string config = Path.Combine(daemon.Directory, "zramd.conf");
        ClientTool.PythonNbd(daemon.Uri(), """
            h = nbd.NBD()
            h.connect_uri(uri)
            h.pwrite(b"zramd reload " * 81920, 0, nbd.CMD_FLAG_FUA)
            h.shutdown()
            """).EnsureSuccess();

        // Set at run time, then a reload of an unchanged file: the value set stays.
        Assert.Equal(0, daemon.Cli("set", "zram0", "mem_limit=12M").ExitCode);
        Hangup(daemon, Reloaded, 1);
        Assert.Equal(12L << 20, daemon.Status().GetProperty("mem_limit").GetInt64());
        Assert.Equal(1L << 20, daemon.Status().GetProperty("writeback_limit").GetInt64());

        // The file changes all three: each applies, nothing waits.
        File.WriteAllText(config, File.ReadAllText(config)
            .Replace("zram-resident-limit = 8M", "zram-resident-limit = 10M\ncompression-algorithm = zstd", StringComparison.Ordinal)
            .Replace("writeback-limit = 1M", "writeback-limit = 2M", StringComparison.Ordinal));
        Hangup(daemon, Reloaded, 1);
        JsonElement status = daemon.Status();
        Assert.Equal(10L << 20, status.GetProperty("mem_limit").GetInt64());
        Assert.StartsWith("zstd", status.GetProperty("algorithm").GetString(), StringComparison.Ordinal);
        Assert.Equal(2L << 20, status.GetProperty("writeback_limit").GetInt64());
        Assert.Contains("SIGHUP: zram0: mem_limit = 10M", daemon.Process.StandardError, StringComparison.Ordinal);
        Assert.EndsWith("settings changed that wait for the next start: 0", LastLine(daemon, Reloaded));

        // A limit below the device's minimum: the configuration does not load (the check of the start), nothing changes.
        File.WriteAllText(config, File.ReadAllText(config).Replace("zram-resident-limit = 10M", "zram-resident-limit = 4K", StringComparison.Ordinal));
        Hangup(daemon, NotReloaded, 1);
        Assert.Contains("[zram0] zram-resident-limit = '4K'", LastLine(daemon, NotReloaded), StringComparison.Ordinal);
        Assert.Equal(10L << 20, daemon.Status().GetProperty("mem_limit").GetInt64());

        // What `zramd set` refuses, a fifth algorithm (a device keeps four), is an error line, and waits for the next start.
        // The fourth is set with `zramd set`, not the file: the warning names what the device runs with, not the file's
        // last value (lz4hc).
        string text = File.ReadAllText(config).Replace("zram-resident-limit = 4K", "zram-resident-limit = 10M", StringComparison.Ordinal);
        foreach (string algorithm in new[] { "lz4hc", "lz4:2" })
        {
            text = text.Replace(text[text.IndexOf("compression-algorithm = ", StringComparison.Ordinal)..].Split('\n')[0], "compression-algorithm = " + algorithm, StringComparison.Ordinal);
            File.WriteAllText(config, text);
            Hangup(daemon, Reloaded, 1);
            if (algorithm == "lz4hc")
            {
                Assert.Equal(0, daemon.Cli("set", "zram0", "comp_algorithm=zstd:5").ExitCode);
            }
        }

        Assert.Contains("SIGHUP: zram0: comp_algorithm: zram0 has used 4 algorithm settings", daemon.Process.StandardError, StringComparison.Ordinal);
        Assert.Contains("SIGHUP: [zram0] compression-algorithm = lz4:2 in the configuration, zstd:5 while running", daemon.Process.StandardError, StringComparison.Ordinal);
        Assert.Equal("zstd:5", daemon.Status().GetProperty("algorithm").GetString());

        ClientTool.PythonNbd(daemon.Uri(), """
            h = nbd.NBD()
            h.connect_uri(uri)
            assert h.pread(13 * 81920, 0) == b"zramd reload " * 81920
            h.shutdown()
            """).EnsureSuccess();
        Assert.Equal(0, daemon.Stop());
    }

    /// <summary>
    /// A path holding ", KEY = " (a writeback-file in a directory named so): the reload took the path's tail for a
    /// setting of its own, named writeback-limit twice, and threw on the reload thread, which ended the daemon and
    /// everything its devices held (a probe's SIGHUP, exit 134). Now the reload compares the settings whole; and a
    /// reload that cannot read its files (here: the configuration file made a directory) is one error line.
    /// </summary>
    [Fact]
    public void Sighup_with_a_path_that_holds_a_comma_and_a_key_reloads_and_keeps_the_data()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(dir =>
        {
            string folder = Directory.CreateDirectory(Path.Combine(dir, "wb, writeback-limit = 1")).FullName;
            return $"[zram0]\nzram-size = 16M\nwriteback-file = {folder}/zram0.wb\n";
        });
        string config = Path.Combine(daemon.Directory, "zramd.conf");
        ClientTool.PythonNbd(daemon.Uri(), """
            h = nbd.NBD()
            h.connect_uri(uri)
            h.pwrite(b"zramd comma " * 87381 + b"zram", 0, nbd.CMD_FLAG_FUA)
            h.shutdown()
            """).EnsureSuccess();

        Hangup(daemon, Reloaded, 1);
        Assert.EndsWith("settings changed that wait for the next start: 0", LastLine(daemon, Reloaded));

        string text = File.ReadAllText(config);
        File.Delete(config);
        Directory.CreateDirectory(config);
        Hangup(daemon, NotReloaded, 1);
        Assert.EndsWith("cannot read the configuration file: it is a directory, not a file", LastLine(daemon, NotReloaded), StringComparison.Ordinal);
        Directory.Delete(config);
        File.WriteAllText(config, text);
        Hangup(daemon, Reloaded, 1);

        ClientTool.PythonNbd(daemon.Uri(), """
            h = nbd.NBD()
            h.connect_uri(uri)
            assert h.pread(12 * 87381 + 4, 0) == b"zramd comma " * 87381 + b"zram"
            h.shutdown()
            """).EnsureSuccess();
        Assert.Equal(0, daemon.Stop());
    }

    private static string LastLine(RunningDaemon daemon, string text) =>
        daemon.Process.StandardError.Split('\n').Last(l => l.Contains(text, StringComparison.Ordinal)).TrimEnd();

    /// <summary>Started with SIGHUP ignored (nohup, a shell's trap '' HUP), zramd still reloads on it: it sets its own
    /// disposition. Found running the README's run.sh under `setsid nohup`: .NET installs no handler over an ignored
    /// signal, zramd inherited SIG_IGN, and a SIGHUP did nothing at all.</summary>
    [Fact]
    public void Started_with_sighup_ignored_it_still_reloads()
    {
        string dir = Directory.CreateTempSubdirectory("zramd-e2e-").FullName;
        try
        {
            using ZramdProcess zramd = ZramdProcess.Start(
                ["--size", "16M", "--listen", "unix:" + Path.Combine(dir, "zramd.sock"), "--control", Path.Combine(dir, "zramd.ctl")],
                new Dictionary<string, string> { ["XDG_RUNTIME_DIR"] = dir },
                hangupIgnored: true);
            zramd.WaitForOutput("attach with:", TimeSpan.FromSeconds(60));
            Assert.Matches(@"^\s*[0-9a-f]*[13579bdf]$", File.ReadLines($"/proc/{zramd.Id.ToString(CultureInfo.InvariantCulture)}/status").Single(l => l.StartsWith("SigCgt:", StringComparison.Ordinal))[7..]);
            using (var hup = System.Diagnostics.Process.Start("kill", ["-HUP", zramd.Id.ToString(CultureInfo.InvariantCulture)]))
            {
                hup.WaitForExit();
            }

            zramd.WaitForOutput(Reloaded, TimeSpan.FromSeconds(30));
            zramd.Terminate();
            Assert.Equal(0, zramd.WaitForExit(TimeSpan.FromSeconds(30)));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
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
