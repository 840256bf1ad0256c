using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Transport;

namespace Nbd.Tests.Transport;

/// <summary>
/// A Unix-socket connection is served with the larger send buffer (<see cref="UnixSendBuffer"/>: large read
/// replies then wait in the kernel instead of the sending thread), as large as the kernel allows; a TCP
/// connection keeps the buffer the kernel tunes for it.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class UnixSendBufferTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("nbd-sndbuf-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task A_unix_connection_is_served_with_the_larger_send_buffer()
    {
        var endPoint = new UnixDomainSocketEndPoint(Path.Combine(_directory, "s.sock"));
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(endPoint);
        listener.Listen();
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(endPoint);
        using Socket accepted = await listener.AcceptAsync();
        int before = accepted.SendBufferSize;

        // The kernel doubles what SO_SNDBUF asks for and caps the request at net.core.wmem_max.
        long wmemMax = long.Parse(File.ReadAllText("/proc/sys/net/core/wmem_max").Trim(), CultureInfo.InvariantCulture);
        long expected = 2 * Math.Min(UnixSendBuffer.Requested, wmemMax);

        int during = await ServedSendBufferSize(accepted);

        Assert.Equal(expected, during);
        Assert.True(during > before, $"send buffer {during} bytes, not more than the default {before}");
    }

    [Fact]
    public async Task A_tcp_connection_keeps_the_send_buffer_the_kernel_tunes()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!);
        using Socket accepted = await listener.AcceptAsync();
        int before = accepted.SendBufferSize;

        Assert.Equal(before, await ServedSendBufferSize(accepted));
    }

    /// <summary>Serves <paramref name="accepted"/> (the client never gets past the handshake), reads its send
    /// buffer size while it is being served, then disconnects it.</summary>
    private static async Task<int> ServedSendBufferSize(Socket accepted)
    {
        await using var server = new NbdServer(new NbdServerOptions(), NullLoggerFactory.Instance);
        using var cancel = new CancellationTokenSource();
        Task serving = server.ServeConnectionAsync(accepted, simpleRepliesOnly: false, cancel.Token);
        int size = accepted.SendBufferSize;
        await cancel.CancelAsync();
        await serving.WaitAsync(TimeSpan.FromSeconds(60));
        return size;
    }
}
