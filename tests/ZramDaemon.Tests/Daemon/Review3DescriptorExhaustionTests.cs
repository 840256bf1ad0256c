using System.Net.Security;
using System.Net.Sockets;
using Xunit.Abstractions;
using ZramDaemon.Tests.Configuration;

namespace ZramDaemon.Tests.Daemon;

/// <summary>Review 3: zramd with its descriptor table full at its first TLS handshake, then freed.</summary>
public sealed class Review3DescriptorExhaustionTests(ITestOutputHelper output)
{
    /// <summary>
    /// FAILS on the current code, in every run so far (5 of 5). The first TLS handshake loads System.Collections.NonGeneric
    /// lazily: AssemblyPreload.LoadForServing (src/ZramDaemon/Safety/AssemblyPreload.cs:19-24) preloads the direct
    /// references of Nbd, zramd and System.Text.Json only, and this is one of System.Net.Security's. Here the daemon's
    /// descriptor limit (prlimit on the running process) leaves three numbers free: the accept thread's eventfd, the
    /// accepted client and the next accept's eventfd take them, and the handshake's load fails ("Connection 1 dropped
    /// during the handshake: Could not load file or assembly 'System.Collections.NonGeneric' ... cannot find the file").
    /// The runtime remembers that failure: once the limit is back to 20000, every later TLS handshake still fails, for
    /// as long as the daemon runs. This is the failure 748482a meant to end, one assembly further down. Right: a daemon
    /// recovers once descriptors come free: what the TLS handshake loads is loaded at start (System.Net.Security's own
    /// references too, or the closure of the TLS path), as Review3AssemblyPreloadTests checks through /proc/PID/maps.
    /// </summary>
    // Three descriptor numbers left free: the accept thread's eventfd (SocketAcceptor makes one per call), the accepted
    // client, and the next call's eventfd; the handshake's assembly load then finds none.
    private const int Free = 3;

    [Fact]
    public void A_TLS_handshake_that_met_a_full_descriptor_table_does_not_break_every_later_one()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(dir =>
        {
            (string cert, string key) = TestCertificate.Write(dir);
            return $"[zramd]\ntls-mode = optional\ntls-certificate = {cert}\ntls-key = {key}\nlog-level = debug\n[zram0]\nzram-size = 16M\n";
        });
        int pid = daemon.Process.Id;
        Assert.Equal(0, daemon.Cli("status").ExitCode);
        Thread.Sleep(500);

        // The smallest limit that leaves one descriptor number free.
        HashSet<int> open = Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd").Select(p => int.Parse(Path.GetFileName(p))).ToHashSet();
        int limit = 1;
        while (limit - open.Count(fd => fd < limit) < Free)
        {
            limit++;
        }

        output.WriteLine($"{open.Count} open, limit {limit}");
        ClientTool.Run("prlimit", ["--pid", pid.ToString(), $"--nofile={limit}:20000"]).EnsureSuccess();
        string? first = TryTls(daemon.Socket);
        output.WriteLine($"under the limit: {first ?? "ok"}");
        ClientTool.Run("prlimit", ["--pid", pid.ToString(), "--nofile=20000:20000"]).EnsureSuccess();
        Thread.Sleep(1500); // the accept loop's back-off

        var failures = new List<string>();
        for (int i = 0; i < 3; i++)
        {
            if (TryTls(daemon.Socket) is { } failure)
            {
                failures.Add(failure);
            }
        }

        Thread.Sleep(1000); // the daemon's log of those connections
        Assert.True(failures.Count == 0,
            $"with descriptors free again, {failures.Count} of 3 TLS handshakes failed: {string.Join(" | ", failures)}; daemon log: {Failures(daemon)}");
    }

    private static string Failures(RunningDaemon daemon) => string.Join("\n", (daemon.Process.StandardOutput + "\n" + daemon.Process.StandardError).Split('\n').Where(l => l.Contains("Exception") || l.Contains("onnection")).Where(l => !l.Contains("PR_SET_IO_FLUSHER")).Take(30));

    private static string? TryTls(string path)
    {
        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 10_000, SendTimeout = 10_000 };
            socket.Connect(new UnixDomainSocketEndPoint(path));
            LongLifeLeakTests.ReceiveExact(socket, 18);
            socket.Send([0, 0, 0, 3]);
            socket.Send([0x49, 0x48, 0x41, 0x56, 0x45, 0x4F, 0x50, 0x54, 0, 0, 0, 5, 0, 0, 0, 0]); // STARTTLS
            byte[] reply = LongLifeLeakTests.ReceiveExact(socket, 20);
            if (reply[^5] != 1)
            {
                return "STARTTLS refused";
            }

            using var ssl = new SslStream(new NetworkStream(socket, ownsSocket: false), false, (_, _, _, _) => true);
            ssl.AuthenticateAsClient("localhost");
            ssl.Write([0x49, 0x48, 0x41, 0x56, 0x45, 0x4F, 0x50, 0x54, 0, 0, 0, 2, 0, 0, 0, 0]); // ABORT
            ssl.Flush();
            return null;
        }
        catch (Exception e)
        {
            return e.GetType().Name + ": " + e.Message;
        }
    }
}
