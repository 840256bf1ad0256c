using System.Net.Security;
using System.Net.Sockets;
using ZramDaemon.Tests.Configuration;

namespace ZramDaemon.Tests.Daemon;

/// <summary>Review 3 of AssemblyPreload (src/ZramDaemon/Safety/AssemblyPreload.cs) on the serving paths.</summary>
public sealed class Review3AssemblyPreloadTests
{
    /// <summary>
    /// FAILS on the current code. AssemblyPreload.LoadForServing (AssemblyPreload.cs:19-24) loads the direct references
    /// of Nbd, zramd and System.Text.Json only; the server's first TLS handshake (NBD_OPT_STARTTLS, SslStream
    /// AuthenticateAsServer) still loads System.Collections.NonGeneric.dll, a reference of System.Net.Security, not of
    /// Nbd. That is the very failure the commit 748482a fixed for System.Net.Security: a lazy load under a burst of
    /// clients that fills the descriptor table fails, the runtime remembers the failure, and every later TLS handshake
    /// fails the same way long after descriptors come free. Right: everything the handshake loads (here also
    /// System.Net.Security's own references, or at least those the TLS path uses) is mapped at start; this test
    /// compares /proc/PID/maps right after start with after one TLS handshake (the control verbs, block status and plain
    /// handshakes load nothing new: checked).
    /// </summary>
    [Fact]
    public void A_TLS_handshake_loads_no_assembly_that_was_not_loaded_at_start()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(dir =>
        {
            (string cert, string key) = TestCertificate.Write(dir);
            return $"[zramd]\ntls-mode = optional\ntls-certificate = {cert}\ntls-key = {key}\n[zram0]\nzram-size = 16M\n";
        });
        int pid = daemon.Process.Id;
        HashSet<string> atStart = Images(pid);

        using (var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 10_000 })
        {
            socket.Connect(new UnixDomainSocketEndPoint(daemon.Socket));
            LongLifeLeakTests.ReceiveExact(socket, 18); // greeting
            socket.Send([0, 0, 0, 3]); // NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES
            socket.Send([0x49, 0x48, 0x41, 0x56, 0x45, 0x4F, 0x50, 0x54, 0, 0, 0, 5, 0, 0, 0, 0]); // IHAVEOPT, STARTTLS
            byte[] reply = LongLifeLeakTests.ReceiveExact(socket, 20);
            Assert.Equal(1, reply[^5]); // NBD_REP_ACK (low byte of the reply type)
            using var ssl = new SslStream(new NetworkStream(socket, ownsSocket: false), false, (_, _, _, _) => true);
            ssl.AuthenticateAsClient("localhost");
            ssl.Write([0x49, 0x48, 0x41, 0x56, 0x45, 0x4F, 0x50, 0x54, 0, 0, 0, 2, 0, 0, 0, 0]); // NBD_OPT_ABORT
            ssl.Flush();
        }

        // The server's side of the handshake is done once it answered; give its thread a moment to finish.
        Assert.Equal(0, daemon.Cli("status").ExitCode);
        HashSet<string> loadedLate = Images(pid);
        loadedLate.ExceptWith(atStart);
        loadedLate.RemoveWhere(image => !image.EndsWith(".dll", StringComparison.Ordinal));
        Assert.True(loadedLate.Count == 0,
            $"loaded at the first TLS handshake, not at start (a load that fails then, with no descriptor free, fails every later handshake): {string.Join(", ", loadedLate)}");
    }

    private static HashSet<string> Images(int pid) =>
        File.ReadAllLines($"/proc/{pid}/maps")
            .Select(line => line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries))
            .Where(fields => fields.Length == 6 && fields[5].StartsWith('/'))
            .Select(fields => fields[5].Trim())
            .ToHashSet(StringComparer.Ordinal);
}
