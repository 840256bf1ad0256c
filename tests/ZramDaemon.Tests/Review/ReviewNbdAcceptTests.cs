using System.Net.Sockets;
using ZramDaemon.Tests.Daemon;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review: one client of the NBD socket can kill zramd, and every page it holds. A client socket bound to an address
/// that fills sun_path (an abstract name of 107 bytes with its leading NUL, or a path of 107 bytes) makes .NET's
/// asynchronous accept fail while it builds the peer's address: with the accept pending, as a server's always is, the
/// runtime throws ArgumentException ("Destination is too short") from SocketAsyncEventArgs.FinishOperationAccept on a
/// thread-pool thread, where nothing can catch it, and the process dies; with the connection already queued when
/// AcceptAsync is called it throws ArgumentOutOfRangeException to the caller instead, which NbdServer.ServeAsync
/// (src/Nbd/Server/NbdServer.cs, the accept loop: it catches only OperationCanceledException, ObjectDisposedException
/// and SocketException) lets end the loop, so the listener never accepts again. NbdListener.AcceptAsync uses
/// Socket.AcceptAsync, so zramd has both failures (its control socket's loop too, ControlServer, though that socket is 0600).
/// Anyone allowed to connect to the NBD socket (0660, group disk) can do it, and zramd backs swap.
/// doc/proto.md: "A party MUST NOT initiate a hard disconnect save where set out in this section"; here one
/// connection ends the service for every client. (When the accept loop dies without the crash, Nbd.Tests could show
/// it in-process; with the crash it takes the test host down, hence a real zramd here.)
/// </summary>
public sealed class ReviewNbdAcceptTests
{
    [Theory]
    [InlineData(true)]  // abstract name, 107 bytes with the leading NUL
    [InlineData(false)] // filesystem path of 107 bytes
    public void A_client_bound_to_a_full_length_unix_address_neither_kills_zramd_nor_stops_its_listener(bool abstractName)
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"]);
        Assert.Equal("16777216", ClientTool.Run("nbdinfo", ["--size", daemon.Uri()]).EnsureSuccess().Stdout.Trim());

        string oddAddress = abstractName
            ? "\0" + new string('r', 106)
            : daemon.Directory + "/" + new string('p', 107 - daemon.Directory.Length - 1);
        using (var odd = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            odd.Bind(new UnixDomainSocketEndPoint(oddAddress));
            odd.Connect(new UnixDomainSocketEndPoint(daemon.Socket));
            Thread.Sleep(500); // the accept completes while the client is still connected
        }

        ClientTool.Result after = ClientTool.Run("nbdinfo", ["--size", daemon.Uri()], timeoutSeconds: 30);
        Assert.False(daemon.Process.HasExited,
            $"zramd died after a client bound to a {oddAddress.Length}-byte address connected:\n{Tail(daemon.Process.StandardError)}");
        Assert.True(after.ExitCode == 0 && after.Stdout.Trim() == "16777216",
            $"nbdinfo after that client: exit {after.ExitCode}, {after.Stderr.Trim()}\nzramd:\n{Tail(daemon.Process.StandardError)}");
    }

    /// <summary>The control socket accepted the same way (ControlServer, Socket.AcceptAsync): the same client killed
    /// zramd through it. It is 0600, so only zramd's own user could, but a crash is never the answer.</summary>
    [Fact]
    public void A_client_bound_to_a_full_length_unix_address_does_not_kill_zramd_through_its_control_socket()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"]);
        Assert.Equal(0, daemon.Cli("status").ExitCode);
        using (var odd = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            odd.Bind(new UnixDomainSocketEndPoint("\0" + new string('c', 106)));
            odd.Connect(new UnixDomainSocketEndPoint(daemon.ControlPath));
            Thread.Sleep(500);
        }

        (int exitCode, string stdout, string stderr) = daemon.Cli("status");
        Assert.False(daemon.Process.HasExited, $"zramd died after a client bound to a 107-byte address connected to its control socket:\n{Tail(daemon.Process.StandardError)}");
        Assert.True(exitCode == 0 && stdout.Contains("zram0", StringComparison.Ordinal), $"status after that client: exit {exitCode}, {stderr.Trim()}");
    }

    private static string Tail(string text) => text.Length <= 3000 ? text : text[^3000..];
}
