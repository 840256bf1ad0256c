using System.Net;
using System.Net.Sockets;
using ZramDaemon.Tests.Daemon;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (docs): what README.md and docs/SECURITY.md promise about configuration errors, their exit code and their
/// one line, checked against the real zramd. Each test fails on the code as reviewed, for the reason in its summary.
/// </summary>
public sealed class RevDConfigErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-revd-").FullName;

    public void Dispose()
    {
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    private string WriteConfig(string text)
    {
        string file = Path.Combine(_dir, "zramd.conf");
        File.WriteAllText(file, text);
        return file;
    }

    /// <summary>Runs zramd on <paramref name="config"/> with its sockets in the test's directory, to its exit (every
    /// configuration here must stop it before it serves; a daemon that starts anyway is stopped and reported).</summary>
    private (int Code, string Stderr) Run(string config, Dictionary<string, string>? environment = null)
    {
        string file = WriteConfig(config);
        var env = environment ?? [];
        env["XDG_RUNTIME_DIR"] = _dir;
        using ZramdProcess process = ZramdProcess.Start(["--config", file, "--listen", "unix:" + Path.Combine(_dir, "zramd.sock")], env);
        int code;
        try
        {
            code = process.WaitForExit(TimeSpan.FromSeconds(30));
        }
        catch (TimeoutException)
        {
            process.Terminate();
            code = process.WaitForExit(TimeSpan.FromSeconds(30));
            Assert.Fail($"zramd started (exit {code} on SIGTERM) on a configuration it should refuse:\n{process.StandardError}");
        }

        return (code, process.StandardOutput + process.StandardError);
    }

    /// <summary>A self-signed certificate and its key (openssl), as PEM files in <paramref name="dir"/>.</summary>
    private static (string Certificate, string Key) MakeCertificate(string dir, string name)
    {
        Directory.CreateDirectory(dir);
        string key = Path.Combine(dir, name + "-key.pem");
        string certificate = Path.Combine(dir, name + "-cert.pem");
        ClientTool.Run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", certificate, "-days", "2", "-subj", "/CN=" + name]).EnsureSuccess();
        return (certificate, key);
    }

    /// <summary>
    /// A certificate with the key of another certificate (both EC P-256, the commonest mistake: two files mixed up, or
    /// a renewed certificate beside the old key). X509Certificate2.CreateFromPem throws ArgumentException ("The provided
    /// key does not match the public key for this certificate") for it, and ConfigurationLoader.LoadCertificate catches
    /// only CryptographicException: the exception reaches Main unhandled, the runtime prints its stack trace and aborts
    /// (exit 134, SIGABRT). docs/SECURITY.md: TLS files are "loaded and checked at start, one error line naming the key and
    /// why otherwise: missing, unreadable, more than 1 MiB, not a certificate and its key"; README: exit "78
    /// configuration error (one line naming the file, line, section, key, value and why; nothing is started)".
    /// The same with the key in the certificate's own file (no tls-key).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_certificate_with_another_certificates_key_is_one_configuration_error_not_an_abort(bool keyInCertificateFile)
    {
        (string certificate, _) = MakeCertificate(Path.Combine(_dir, "pki"), "server");
        (_, string otherKey) = MakeCertificate(Path.Combine(_dir, "pki"), "other");
        string config;
        if (keyInCertificateFile)
        {
            string both = Path.Combine(_dir, "pki", "both.pem");
            File.WriteAllText(both, File.ReadAllText(certificate) + File.ReadAllText(otherKey));
            config = $"[zramd]\ntls-mode = required\ntls-certificate = {both}\n[zram0]\nzram-size = 16\n";
        }
        else
        {
            config = $"[zramd]\ntls-mode = required\ntls-certificate = {certificate}\ntls-key = {otherKey}\n[zram0]\nzram-size = 16\n";
        }

        (int code, string output) = Run(config);
        Assert.True(code == 78 && !output.Contains("Unhandled exception", StringComparison.Ordinal),
            "docs/SECURITY.md: TLS files are \"loaded and checked at start, one error line naming the key and why otherwise: ... "
            + "not a certificate and its key\"; README: \"78 configuration error (one line naming the file, line, section, key, value "
            + $"and why; nothing is started)\". Got exit {code}:\n{output}");
        string[] lines = output.Trim().Split('\n');
        Assert.True(lines.Length == 1 && lines[0].Contains("zramd.conf:", StringComparison.Ordinal)
            && lines[0].Contains(keyInCertificateFile ? "tls-certificate" : "tls-key", StringComparison.Ordinal),
            "README: \"one line naming the file, line, section, key, value and why\". Got:\n" + output);
    }

    /// <summary>
    /// A tls-certificate file that holds no certificate (DER instead of PEM, or any other file) next to a good tls-key:
    /// the error line names tls-key, its line and the key's path, and blames "the certificate and key", so the admin
    /// looks at the one file that is fine. ConfigurationLoader.LoadCertificate reports every CryptographicException of
    /// CreateFromPem under <c>daemon.TlsKey ?? certificate</c>, whichever file was at fault. README: a configuration
    /// error is "one line naming the file, line, section, key, value and why"; docs/SECURITY.md: "one error line naming
    /// the key and why". Expected: the line names tls-certificate and the certificate's path.
    /// </summary>
    [Fact]
    public void A_certificate_file_that_holds_no_certificate_is_named_as_tls_certificate_not_tls_key()
    {
        (_, string key) = MakeCertificate(Path.Combine(_dir, "pki"), "server");
        string notACertificate = Path.Combine(_dir, "pki", "not-a-certificate.pem");
        File.WriteAllText(notACertificate, "this is not a certificate\n");
        string config = $"[zramd]\ntls-mode = required\ntls-certificate = {notACertificate}\ntls-key = {key}\n[zram0]\nzram-size = 16\n";

        (int code, string output) = Run(config);
        Assert.Equal(78, code);
        string line = output.Trim();
        Assert.True(line.Contains($"zramd.conf:3 [zramd] tls-certificate = '{notACertificate}'", StringComparison.Ordinal),
            "README: a configuration error is \"one line naming the file, line, section, key, value and why\" (docs/SECURITY.md: "
            + "\"one error line naming the key and why\"): the certificate's file is at fault, on line 3. Got:\n" + line);
    }

    /// <summary>
    /// <c>attach = /dev/nbd01</c> (a leading zero) passes the configuration's check (ConfigurationLoader's NbdDevicePath,
    /// ^/dev/nbd[0-9]+$), and only the start refuses it: zramd makes the devices, binds the sockets, then fails with exit 1
    /// and "zramd could not start: [zram0] attach = /dev/nbd01: '/dev/nbd01' is not an nbd device: use /dev/nbdN" (no
    /// file, no line), since KernelNbdAttachment.TryParseDevice takes no leading zero (zramd attach /dev/nbd01 is a usage
    /// error, DeviceNameTests). README: "78 configuration error (one line naming the file, line, section, key, value and
    /// why; nothing is started)". No kernel nbd device is needed: the value is refused before the kernel is asked.
    /// </summary>
    [Theory]
    [InlineData("/dev/nbd01")]
    [InlineData("/dev/nbd99999999999999999999")]
    public void An_attach_value_that_is_no_nbd_device_name_is_a_configuration_error_exit_78(string device)
    {
        (int code, string output) = Run($"[zram0]\nzram-size = 16\nattach = {device}\n");
        Assert.True(code == 78 && output.Contains($"zramd.conf:3 [zram0] attach = '{device}'", StringComparison.Ordinal)
            && !output.Contains("Serving NBD", StringComparison.Ordinal),
            "README: \"78 configuration error (one line naming the file, line, section, key, value and why; nothing is started)\". "
            + $"Got exit {code}:\n{output}");
    }

    /// <summary>
    /// Under journald every log line carries its syslog priority, but the one line of a configuration error (exit 78) is
    /// written by DaemonRunner straight to standard error as "zramd: FILE:LINE ...", with no prefix: journald stores it at
    /// its default priority (info), so <c>journalctl -p err -u zramd</c> shows nothing for the one failure whose line
    /// tells the admin what to fix, while a start that fails later gets &lt;2&gt;. README: "Logs go to standard error;
    /// under journald (JOURNAL_STREAM set) lines carry `&lt;N&gt;` priorities and no timestamps."
    /// </summary>
    [Fact]
    public void Under_journald_the_configuration_error_line_carries_an_error_priority()
    {
        (int code, string output) = Run("[zram0]\nzram-size = 16\ncompact-watermark = 0\n", new Dictionary<string, string> { ["JOURNAL_STREAM"] = "8:12345" });
        Assert.Equal(78, code);
        string line = output.Split('\n').Single(l => l.Contains("compact-watermark", StringComparison.Ordinal));
        Assert.True(line.StartsWith("<3>", StringComparison.Ordinal) || line.StartsWith("<2>", StringComparison.Ordinal),
            "README: \"under journald (JOURNAL_STREAM set) lines carry `<N>` priorities\": the configuration error must be "
            + "an error (<3>) or critical (<2>) entry, as the failed start's line is (<2>). Got: " + line);
    }
}

/// <summary>Review (docs): the start line and the configuration report, from the real zramd.</summary>
public sealed class RevDStartLineTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-revd-").FullName;

    public void Dispose()
    {
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    private static int FreeTcpPort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    /// <summary>
    /// Socket activation with a TCP socket (ListenStream=127.0.0.1:PORT): the start line is "serving zram0 on
    /// tcp:127.0.0.1:PORT (systemd)" and nothing more. ZramdService.Start gives AttachHint an address only when a passed
    /// socket is a Unix one, so the hint is left out, whereas a configured tcp: listener gets "attach with: nbd-client
    /// 127.0.0.1 PORT ... or: nbdinfo 'nbd://127.0.0.1:PORT/zram0'". README: "On start zramd prints one line with where it
    /// listens and how to attach".
    /// </summary>
    [Fact]
    public void Socket_activated_tcp_gets_the_start_line_with_how_to_attach()
    {
        int port = FreeTcpPort();
        using var activator = SocketActivator.Start([$"127.0.0.1:{port}"], _dir, ["--size", "16M", "--control", Path.Combine(_dir, "zramd.ctl")]);
        string uri = $"nbd://127.0.0.1:{port}/zram0";
        ClientTool.Result size = default!;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while ((size = ClientTool.Run("nbdinfo", ["--size", uri])).ExitCode != 0 && clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            Thread.Sleep(100); // the activator may not be listening yet
        }

        size.EnsureSuccess();
        Assert.Equal(0, activator.Stop());
        string start = activator.Log.Split('\n').Single(l => l.Contains("serving zram0 on", StringComparison.Ordinal));
        Assert.True(start.Contains("attach with:", StringComparison.Ordinal) && start.Contains($"nbd://127.0.0.1:{port}/zram0", StringComparison.Ordinal),
            "README: \"On start zramd prints one line with where it listens and how to attach\". Got: " + start);
    }

    /// <summary>
    /// README: "Startup logs the configuration in effect." ConfigurationReport.Log writes every [zramd] key but
    /// log-level (and every device key but attach): a daemon run with log-level = debug (or warning, through
    /// ZRAMD_LOG_LEVEL) never says which level it runs at, so a journal that lacks the expected lines cannot tell a
    /// quiet level from a daemon that did nothing.
    /// </summary>
    [Fact]
    public void The_configuration_logged_at_start_includes_log_level()
    {
        File.WriteAllText(Path.Combine(_dir, "zramd.conf"), "[zramd]\nlog-level = debug\nmax-payload = 5000\n[zram0]\nzram-size = 16\n");
        using RunningDaemon daemon = RunningDaemon.Start(["--config", Path.Combine(_dir, "zramd.conf")], directory: _dir);
        Assert.Equal(0, daemon.Stop());
        string[] report = daemon.Process.StandardError.Split('\n').Where(l => l.Contains(" = ", StringComparison.Ordinal) && l.Contains("INF", StringComparison.Ordinal)).ToArray();
        Assert.True(report.Any(l => l.Contains("log-level = debug", StringComparison.Ordinal)),
            "README: \"Startup logs the configuration in effect.\" The lines logged:\n" + string.Join('\n', report));
        // Every value filled in: with seven values the generated logger matched a parameter named @lock to no
        // placeholder, and printed "lock-memory = {Lock}".
        Assert.True(report.All(l => !l.Contains('{', StringComparison.Ordinal)), "a placeholder left unfilled:\n" + string.Join('\n', report));
        Assert.Contains(report, l => l.Contains("lock-memory = yes,", StringComparison.Ordinal) || l.Contains("lock-memory = no,", StringComparison.Ordinal));
        // Sizes as they run, not rounded: "max-payload = 4.9K" before.
        Assert.Contains(report, l => l.Contains("max-payload = 5000,", StringComparison.Ordinal));
    }
}

/// <summary>Review (docs): docs/SECURITY.md's systemd hardening table against systemd/zramd.service.</summary>
public sealed class RevDSecurityDocTests
{
    /// <summary>
    /// docs/SECURITY.md, "systemd hardening": "`systemd/zramd.service` runs zramd as root ... and takes away what it does
    /// not need. ... Directive by directive:", and its ProtectSystem=strict row says "the whole file system is read-only
    /// for zramd except /run/zramd and the API file systems | zramd writes nothing but its sockets". The unit also has
    /// StateDirectory=zramd and StateDirectoryMode=0700, which make /var/lib/zramd writable because zramd does write
    /// there: the writeback-file (README's example: /var/lib/zramd/zram0.wb), holding pages swapped out of RAM. The table
    /// names neither directive, so the file that holds swapped-out memory on disk, the one place zramd writes besides
    /// its sockets, is missing from the threat model. Expected: every [Service] directive of the unit but ExecStart= has
    /// its row (or mention) in SECURITY.md.
    /// </summary>
    [Fact]
    public void Every_directive_of_the_unit_is_in_the_security_documents_table()
    {
        string root = ZramDaemon.Tests.Repository.RepositoryRoot.Path;
        string security = File.ReadAllText(Path.Combine(root, "docs", "SECURITY.md"));
        string unit = File.ReadAllText(Path.Combine(root, "systemd", "zramd.service"));
        string service = unit[unit.IndexOf("[Service]", StringComparison.Ordinal)..unit.IndexOf("[Install]", StringComparison.Ordinal)];
        string[] directives = service.Split('\n')
            .Select(l => l.Trim())
            .Where(l => l.Length > 0 && !l.StartsWith('#') && !l.StartsWith('[') && l.Contains('=', StringComparison.Ordinal))
            .Select(l => l[..l.IndexOf('=', StringComparison.Ordinal)])
            .Where(d => d != "ExecStart")
            .ToArray();
        Assert.NotEmpty(directives);
        string[] missing = directives.Where(d => !security.Contains($"`{d}=", StringComparison.Ordinal)).ToArray();
        Assert.True(missing.Length == 0,
            "docs/SECURITY.md: \"systemd/zramd.service ... takes away what it does not need. ... Directive by directive:\" "
            + "(and ProtectSystem=strict: \"zramd writes nothing but its sockets\"). Not in its table: " + string.Join(", ", missing));
    }
}
