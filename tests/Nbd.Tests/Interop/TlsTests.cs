using Microsoft.Extensions.Logging.Abstractions;
using System.Security.Cryptography.X509Certificates;

namespace Nbd.Tests.Interop;

/// <summary>NBD_OPT_STARTTLS with SslStream, against libnbd (GnuTLS) using throwaway certificates.</summary>
public class TlsTests
{
    /// <summary>Makes a self-signed certificate for "localhost" in <paramref name="directory"/> (as libnbd wants
    /// it: ca-cert.pem) and returns it loaded with its key.</summary>
    internal static async Task<X509Certificate2> MakeCertificateAsync(string directory)
    {
        Directory.CreateDirectory(directory);
        string cert = Path.Combine(directory, "ca-cert.pem");
        string key = Path.Combine(directory, "key.pem");
        (await Tool.RunAsync("openssl",
        [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
            "-addext", "basicConstraints=critical,CA:TRUE",
        ])).EnsureSuccess();
        using var pem = X509Certificate2.CreateFromPemFile(cert, key);

        // Round-trip through PKCS#12 so that the private key is usable by SslStream on every platform.
        return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>
    /// Makes an authority in <paramref name="directory"/> (<see cref="MakeCertificateAsync"/>'s, returned) and a client
    /// certificate it signs for clientAuth, which libnbd loads from a tls-certificates directory as client-cert.pem
    /// and client-key.pem.
    /// </summary>
    internal static async Task<X509Certificate2> MakeClientAuthorityAsync(string directory)
    {
        X509Certificate2 authority = await MakeCertificateAsync(directory);
        string request = Path.Combine(directory, "client.csr");
        (await Tool.RunAsync("openssl",
        [
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", Path.Combine(directory, "client-key.pem"), "-out", request,
            "-subj", "/CN=client",
        ])).EnsureSuccess();
        string extensions = Path.Combine(directory, "client.ext");
        await File.WriteAllTextAsync(extensions, "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n");
        (await Tool.RunAsync("openssl",
        [
            "x509", "-req", "-in", request, "-CA", Path.Combine(directory, "ca-cert.pem"), "-CAkey", Path.Combine(directory, "key.pem"),
            "-CAcreateserial", "-days", "2", "-out", Path.Combine(directory, "client-cert.pem"), "-extfile", extensions,
        ])).EnsureSuccess();
        return authority;
    }

    /// <summary>Runs <paramref name="test"/> with a scratch directory of its own (for certificates), deleted after.</summary>
    private static async Task InScratchAsync(Func<string, Task> test)
    {
        string scratch = Path.Combine(Path.GetTempPath(), "nbd-tls-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            await test(scratch);
        }
        finally
        {
            if (Directory.Exists(scratch))
            {
                Directory.Delete(scratch, recursive: true);
            }
        }
    }

    private static string TlsUri(TestServer server, string certificates) =>
        $"nbds+unix:///mem?socket={server.SocketPath}&tls-certificates={certificates}";

    [Fact]
    public async Task Required_mode_serves_TLS_clients_and_refuses_plain_ones_and_wrong_certificates()
    {
        await InScratchAsync(async scratch =>
        {
            using X509Certificate2 certificate = await MakeCertificateAsync(Path.Combine(scratch, "good"));
            using X509Certificate2 other = await MakeCertificateAsync(Path.Combine(scratch, "wrong"));
            await using var server = new TestServer(new NbdServerOptions { TlsMode = NbdTlsMode.Required, TlsCertificate = certificate });

            string good = TlsUri(server, Path.Combine(scratch, "good"));
            (await Tool.NbdshAsync($$"""
                h = nbd.NBD()
                h.set_uri_allow_local_file(True)
                h.connect_uri("{{good}}")
                assert h.get_tls_negotiated()
                assert h.get_structured_replies_negotiated()
                h.pwrite(b"\x42" * 65536, 0, nbd.CMD_FLAG_FUA)
                assert h.pread(65536, 0) == b"\x42" * 65536
                h.shutdown()
                """)).EnsureSuccess();

            // Plain client: every option but STARTTLS gets ERR_TLS_REQD, so nothing can be used.
            Tool.Result plain = await Tool.RunAsync("nbdinfo", ["--size", server.Uri()]);
            Assert.NotEqual(0, plain.ExitCode);
            Assert.Contains("TLS", plain.Stderr, StringComparison.OrdinalIgnoreCase);

            // The client trusts another CA: it must refuse our certificate. Over TCP, because libnbd 1.14 only
            // verifies the peer when it has a host name to check, which a Unix socket URI does not give it.
            int port = server.ListenTcp();
            Assert.Equal("16777216", (await Tool.RunAsync("nbdinfo",
                ["--size", $"nbds://localhost:{port}/mem?tls-certificates={Path.Combine(scratch, "good")}"])).EnsureSuccess().Stdout.Trim());
            Tool.Result wrong = await Tool.RunAsync("nbdinfo",
                ["--size", $"nbds://localhost:{port}/mem?tls-certificates={Path.Combine(scratch, "wrong")}"]);
            Assert.NotEqual(0, wrong.ExitCode);
            Assert.Contains("certificate", wrong.Stderr, StringComparison.OrdinalIgnoreCase);

            // And the server keeps serving good clients.
            Assert.Equal("16777216", (await Tool.RunAsync("nbdinfo", ["--size", good])).EnsureSuccess().Stdout.Trim());
        });
    }

    [Fact]
    public async Task With_client_authorities_only_a_client_certificate_they_issued_is_served()
    {
        await InScratchAsync(async scratch =>
        {
            using X509Certificate2 certificate = await MakeCertificateAsync(Path.Combine(scratch, "server"));
            using X509Certificate2 trusted = await MakeClientAuthorityAsync(Path.Combine(scratch, "trusted"));
            using X509Certificate2 foreign = await MakeClientAuthorityAsync(Path.Combine(scratch, "foreign"));

            // libnbd's directories: the server's CA (ca-cert.pem) and, but for "none", a client certificate and key.
            string Client(string name, string? issuer)
            {
                string dir = Path.Combine(scratch, "client-" + name);
                Directory.CreateDirectory(dir);
                File.Copy(Path.Combine(scratch, "server", "ca-cert.pem"), Path.Combine(dir, "ca-cert.pem"));
                if (issuer is not null)
                {
                    File.Copy(Path.Combine(scratch, issuer, "client-cert.pem"), Path.Combine(dir, "client-cert.pem"));
                    File.Copy(Path.Combine(scratch, issuer, "client-key.pem"), Path.Combine(dir, "client-key.pem"));
                }

                return dir;
            }

            await using var server = new TestServer(new NbdServerOptions
            {
                TlsMode = NbdTlsMode.Required,
                TlsCertificate = certificate,
                TlsClientAuthorities = [trusted],
            });

            string good = TlsUri(server, Client("good", "trusted"));
            (await Tool.NbdshAsync($$"""
                h = nbd.NBD()
                h.set_uri_allow_local_file(True)
                h.connect_uri("{{good}}")
                assert h.get_tls_negotiated()
                h.pwrite(b"\x5a" * 65536, 0)
                assert h.pread(65536, 0) == b"\x5a" * 65536
                h.shutdown()
                """)).EnsureSuccess();

            foreach (string refused in new[] { TlsUri(server, Client("none", null)), TlsUri(server, Client("foreign", "foreign")) })
            {
                Tool.Result result = await Tool.RunAsync("nbdinfo", ["--size", refused]);
                Assert.True(result.ExitCode != 0, $"served without a trusted client certificate: {refused}");
            }

            Assert.Equal("16777216", (await Tool.RunAsync("nbdinfo", ["--size", good])).EnsureSuccess().Stdout.Trim());
        });
    }

    [Fact]
    public async Task Client_authorities_need_required_mode_and_at_least_one_authority()
    {
        await InScratchAsync(async scratch =>
        {
            using X509Certificate2 certificate = await MakeCertificateAsync(scratch);
            NbdServerOptions Options(NbdTlsMode mode, X509Certificate2Collection authorities) =>
                new() { TlsMode = mode, TlsCertificate = certificate, TlsClientAuthorities = authorities };

            // Optional would let a client in unchecked by not starting TLS; an empty set would refuse everyone.
            foreach (NbdServerOptions options in new[] { Options(NbdTlsMode.Optional, [certificate]), Options(NbdTlsMode.Required, []) })
            {
                var e = Assert.Throws<ArgumentException>(() => new NbdServer(options, NullLoggerFactory.Instance));
                Assert.Equal(nameof(NbdServerOptions.TlsClientAuthorities), e.ParamName);
            }

            await using var accepted = new NbdServer(Options(NbdTlsMode.Required, [certificate]), NullLoggerFactory.Instance);
        });
    }

    /// <summary>
    /// ReplaceTlsCredentials (a renewed certificate, another client authority, without a restart): new handshakes
    /// present the new certificate and check clients against the new authorities; a connection that started TLS
    /// before is still served; a replacement the rules refuse leaves the credentials in use serving. Over TCP, as
    /// above, so that libnbd checks the server's certificate.
    /// </summary>
    [Fact]
    public async Task Replaced_credentials_serve_new_handshakes_and_open_connections_go_on()
    {
        await InScratchAsync(async scratch =>
        {
            using X509Certificate2 first = await MakeCertificateAsync(Path.Combine(scratch, "first"));
            using X509Certificate2 second = await MakeCertificateAsync(Path.Combine(scratch, "second"));
            using X509Certificate2 authority = await MakeClientAuthorityAsync(Path.Combine(scratch, "clients"));
            await using var server = new TestServer(new NbdServerOptions { TlsMode = NbdTlsMode.Required, TlsCertificate = first });
            int port = server.ListenTcp();
            string Tcp(string certificates) => $"nbds://localhost:{port}/mem?tls-certificates={Path.Combine(scratch, certificates)}";
            async Task<bool> ServedAsync(string certificates) => (await Tool.RunAsync("nbdinfo", ["--size", Tcp(certificates)])).ExitCode == 0;

            // A client that negotiated TLS under the first certificate stays connected across the replacement.
            string connected = Path.Combine(scratch, "connected");
            string go = Path.Combine(scratch, "go");
            Task<Tool.Result> held = Tool.NbdshAsync($$"""
                import os, time
                h = nbd.NBD()
                h.set_uri_allow_local_file(True)
                h.connect_uri("{{Tcp("first")}}")
                h.pwrite(b"\x11" * 4096, 0)
                open("{{connected}}", "w").close()
                deadline = time.time() + 50
                while not os.path.exists("{{go}}") and time.time() < deadline:
                    time.sleep(0.01)
                assert os.path.exists("{{go}}")
                assert h.pread(4096, 0) == b"\x11" * 4096
                h.pwrite(b"\x22" * 4096, 4096, nbd.CMD_FLAG_FUA)
                h.shutdown()
                """);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!File.Exists(connected) && !held.IsCompleted && clock.Elapsed < TimeSpan.FromSeconds(30))
            {
                await Task.Delay(10);
            }

            Assert.True(File.Exists(connected), "the held client never connected: " + (held.IsCompleted ? (await held).Stderr : "timed out"));
            server.Server.ReplaceTlsCredentials(second, null);
            await File.WriteAllTextAsync(go, string.Empty);
            (await held).EnsureSuccess();
            byte[] written = new byte[4096];
            Assert.Equal(Nbd.Devices.NbdError.None, server.Device().Read(4096, written));
            Assert.All(written, b => Assert.Equal(0x22, b));

            // New handshakes present the second certificate.
            Assert.False(await ServedAsync("first"), "the replaced certificate is still presented");
            Assert.True(await ServedAsync("second"), "the new certificate is not presented");

            // An authority added: a client without a certificate is refused, one it issued is served.
            server.Server.ReplaceTlsCredentials(second, [authority]);
            string withCertificate = Path.Combine(scratch, "second-client");
            Directory.CreateDirectory(withCertificate);
            File.Copy(Path.Combine(scratch, "second", "ca-cert.pem"), Path.Combine(withCertificate, "ca-cert.pem"));
            File.Copy(Path.Combine(scratch, "clients", "client-cert.pem"), Path.Combine(withCertificate, "client-cert.pem"));
            File.Copy(Path.Combine(scratch, "clients", "client-key.pem"), Path.Combine(withCertificate, "client-key.pem"));
            Assert.False(await ServedAsync("second"), "served without a client certificate after the authority was added");
            Assert.True(await ServedAsync("second-client"), "a client certificate the new authority issued is refused");

            // Replacements the rules refuse (no private key, an empty set of authorities) change nothing.
            using X509Certificate2 withoutKey = X509CertificateLoader.LoadCertificate(first.Export(X509ContentType.Cert));
            Assert.Equal("certificate", Assert.Throws<ArgumentException>(() => server.Server.ReplaceTlsCredentials(withoutKey, null)).ParamName);
            Assert.Equal("clientAuthorities", Assert.Throws<ArgumentException>(() => server.Server.ReplaceTlsCredentials(first, [])).ParamName);
            Assert.False(await ServedAsync("second"), "a refused replacement dropped the client check");
            Assert.True(await ServedAsync("second-client"), "a refused replacement changed the certificate");
        });
    }

    /// <summary>The TLS mode is fixed at construction: a server with TLS off has no credentials to replace, and under
    /// Optional client authorities are refused as in the options (a client could stay in clear text unchecked).</summary>
    [Fact]
    public async Task Credentials_cannot_turn_TLS_on_or_check_clients_under_optional_mode()
    {
        await InScratchAsync(async scratch =>
        {
            using X509Certificate2 certificate = await MakeCertificateAsync(scratch);
            await using var off = new NbdServer(new NbdServerOptions(), NullLoggerFactory.Instance);
            Assert.Throws<InvalidOperationException>(() => off.ReplaceTlsCredentials(certificate, null));
            await using var optional = new NbdServer(new NbdServerOptions { TlsMode = NbdTlsMode.Optional, TlsCertificate = certificate }, NullLoggerFactory.Instance);
            Assert.Equal("clientAuthorities", Assert.Throws<ArgumentException>(() => optional.ReplaceTlsCredentials(certificate, [certificate])).ParamName);
            optional.ReplaceTlsCredentials(certificate, null);
        });
    }

    [Fact]
    public async Task Optional_mode_serves_both_plain_and_TLS_clients()
    {
        await InScratchAsync(async scratch =>
        {
            using X509Certificate2 certificate = await MakeCertificateAsync(scratch);
            await using var server = new TestServer(new NbdServerOptions { TlsMode = NbdTlsMode.Optional, TlsCertificate = certificate });

            Assert.Equal("16777216", (await Tool.RunAsync("nbdinfo", ["--size", server.Uri()])).EnsureSuccess().Stdout.Trim());
            Assert.Equal("16777216", (await Tool.RunAsync("nbdinfo", ["--size", TlsUri(server, scratch)])).EnsureSuccess().Stdout.Trim());
        });
    }

    [Fact]
    public async Task Off_mode_refuses_STARTTLS_and_a_TLS_only_client_gives_up()
    {
        await using var server = new TestServer();
        Tool.Result result = await Tool.RunAsync("nbdinfo", ["--size", $"nbds+unix:///mem?socket={server.SocketPath}"]);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Equal("16777216", (await Tool.RunAsync("nbdinfo", ["--size", server.Uri()])).EnsureSuccess().Stdout.Trim());
    }
}
