using System.Diagnostics.Tracing;
using System.Security.Cryptography.X509Certificates;

namespace Nbd.Tests.Interop;

[CollectionDefinition(nameof(TlsSessionCountCollection), DisableParallelization = true)]
public sealed class TlsSessionCountCollection
{
}

/// <summary>
/// A TLS session that ends in the handshake (NBD_OPT_ABORT, or the client gone after STARTTLS) must dispose its
/// SslStream, not leave it and its OpenSSL state to the finalizer. Seen through .NET's own count of open TLS sessions
/// (System.Net.Security's "all-tls-sessions-open" counter, which Dispose lowers); alone in its collection, so no other
/// test's sessions move it.
/// </summary>
[Collection(nameof(TlsSessionCountCollection))]
public class TlsSessionDisposalTests
{
    [Fact]
    public async Task Tls_sessions_that_end_in_the_handshake_are_disposed()
    {
        string scratch = Path.Combine(Path.GetTempPath(), "nbd-tls-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            using X509Certificate2 certificate = await TlsTests.MakeCertificateAsync(scratch);
            using var sessions = new TlsSessionCounter();
            await using var server = new TestServer(new NbdServerOptions { TlsMode = NbdTlsMode.Required, TlsCertificate = certificate });
            string uri = $"nbds+unix:///mem?socket={server.SocketPath}&tls-certificates={scratch}";

            // A client served and gone first: System.Net.Security's counters exist from the first TLS stream on.
            (await Tool.NbdshAsync($$"""
                h = nbd.NBD()
                h.set_uri_allow_local_file(True)
                h.connect_uri("{{uri}}")
                assert h.pread(512, 0) == bytes(512)
                h.shutdown()
                """)).EnsureSuccess();
            // Its session closes with it (a shutdown ends it): alone in its collection, the count goes back to 0. Waited
            // for, so that a dispose that lags on a loaded machine is not counted as open below.
            double before = await SettledAsync(sessions);
            Assert.Equal(0, before);

            // Then one client aborts the option haggling after STARTTLS and one just goes away.
            (await Tool.NbdshAsync($$"""
                h = nbd.NBD()
                h.set_uri_allow_local_file(True)
                h.set_opt_mode(True)
                h.connect_uri("{{uri}}")
                assert h.get_tls_negotiated()
                h.opt_abort()
                h2 = nbd.NBD()
                h2.set_uri_allow_local_file(True)
                h2.set_opt_mode(True)
                h2.connect_uri("{{uri}}")
                assert h2.get_tls_negotiated()
                del h2
                """)).EnsureSuccess();

            // Both sessions were counted open (a completed handshake) and must be closed again (a leak leaves them
            // to the finalizer, which no collection here runs).
            Assert.Equal(before, await SettledAsync(sessions));
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    /// <summary>The count once it is 0, or as it stands after about 30 s of reports.</summary>
    private static async Task<double> SettledAsync(TlsSessionCounter sessions)
    {
        double open = await sessions.NextAsync();
        for (int i = 0; i < 300 && open != 0; i++)
        {
            open = await sessions.NextAsync();
        }

        return open;
    }

    /// <summary>Listens to System.Net.Security's counters from its creation, so every handshake after is counted.</summary>
    private sealed class TlsSessionCounter : EventListener
    {
        private readonly SemaphoreSlim _updated = new(0);
        private double _open = double.NaN;

        /// <summary>The open-session count at the counter's next report (every 0.1 s).</summary>
        public async Task<double> NextAsync()
        {
            while (_updated.CurrentCount > 0)
            {
                await _updated.WaitAsync();
            }

            Assert.True(await _updated.WaitAsync(TimeSpan.FromSeconds(10)), "System.Net.Security reported no counters");
            return Volatile.Read(ref _open);
        }

        protected override void OnEventSourceCreated(EventSource source)
        {
            if (source.Name == "System.Net.Security")
            {
                EnableEvents(source, EventLevel.LogAlways, EventKeywords.All,
                    new Dictionary<string, string?> { ["EventCounterIntervalSec"] = "0.1" });
            }
        }

        protected override void OnEventWritten(EventWrittenEventArgs e)
        {
            if (e.EventName == "EventCounters" && e.Payload is [IDictionary<string, object> counter, ..]
                && counter.TryGetValue("Name", out object? name) && (string?)name == "all-tls-sessions-open"
                && counter.TryGetValue("Mean", out object? mean))
            {
                Volatile.Write(ref _open, Convert.ToDouble(mean, System.Globalization.CultureInfo.InvariantCulture));
                _updated.Release();
            }
        }
    }
}
