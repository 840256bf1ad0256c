using System.Net.Sockets;

namespace ZramDaemon.Tests.Daemon;

/// <summary>
/// A --listen or --control path where another server's datagram socket lives (journald's /dev/log, systemd's notify
/// socket): zramd's probe for a stale socket file connects with a stream socket, which fails with EPROTOTYPE there,
/// not ECONNREFUSED; the file was taken for stale, deleted, and zramd served in its place, cutting the other server off
/// its path. The start fails and the other server keeps its socket.
/// </summary>
public sealed class LiveDatagramSocketPathTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-live-dgram-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_live_datagram_socket_at_the_listen_or_control_path_fails_the_start_and_is_kept(bool asListen)
    {
        string log = Path.Combine(_dir, "log");
        using var journal = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        journal.Bind(new UnixDomainSocketEndPoint(log));
        string listen = asListen ? log : Path.Combine(_dir, "zramd.sock");
        string control = asListen ? Path.Combine(_dir, "zramd.ctl") : log;

        using ZramdProcess process = ZramdProcess.Start(["--listen", "unix:" + listen, "--control", control, "--size", "16M"]);
        int code;
        try
        {
            code = process.WaitForExit(TimeSpan.FromSeconds(60)); // a start that fails can take over 10 s on a loaded machine
        }
        catch (TimeoutException)
        {
            code = -1; // still serving: it took the path
        }

        // The other server still gets what is sent to its path.
        using var sender = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        Exception? sendFailure = Record.Exception(() => sender.SendTo("hello"u8.ToArray(), new UnixDomainSocketEndPoint(log)));
        Assert.True(sendFailure is null, $"the datagram socket at {log} was replaced: {sendFailure?.Message}; zramd exit {code}; stderr:\n{process.StandardError}");
        Assert.Equal(1, code);
    }
}
