using System.Net.Sockets;

namespace Nbd.Tests.Transport;

/// <summary>
/// A socket file another server is bound to with another socket type (journald's /dev/log and systemd's notify socket
/// are datagram sockets): the stream probe's connect fails with EPROTOTYPE, not ECONNREFUSED, and that is no sign of a
/// stale file. Only a refused connection means nobody is bound there.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class LiveOtherTypeSocketTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("nbd-live-other-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Theory]
    [InlineData(SocketType.Dgram)]
    [InlineData(SocketType.Seqpacket)]
    public void A_live_socket_of_another_type_is_refused_and_kept(SocketType type)
    {
        string path = Path.Combine(_directory, "live.sock");
        using var live = new Socket(AddressFamily.Unix, type, ProtocolType.Unspecified);
        live.Bind(new UnixDomainSocketEndPoint(path));
        if (type == SocketType.Seqpacket)
        {
            live.Listen();
        }

        NbdListener? taken = null;
        try
        {
            Assert.Throws<IOException>(() => taken = NbdListener.BindUnix(path));
        }
        finally
        {
            taken?.Dispose();
        }

        // The other server still receives at its path.
        using var client = new Socket(AddressFamily.Unix, type, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(path));
    }

    /// <summary>A file left by a server of another type that is gone is stale as a stream one is: replaced.</summary>
    [Theory]
    [InlineData(SocketType.Dgram)]
    [InlineData(SocketType.Seqpacket)]
    public void A_stale_socket_of_another_type_is_replaced(SocketType type)
    {
        string path = Path.Combine(_directory, "stale.sock");
        using (var leftover = new Socket(AddressFamily.Unix, type, ProtocolType.Unspecified))
        {
            // Not Socket.Bind, whose file the runtime deletes at dispose: this one stays, as a crash leaves it.
            UnixSocketFile.Bind(leftover, path);
        }

        Assert.True(File.Exists(path));
        using NbdListener listener = NbdListener.BindUnix(path);
        Assert.True(File.Exists(path));
    }
}
