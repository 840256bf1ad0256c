using System.Net.Sockets;
using System.Text;

namespace ZramDaemon.Control;

/// <summary>Sends one request to a running daemon's control socket and reads its one-line reply.</summary>
public static class ControlClient
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <exception cref="SocketException">Nobody answers at <paramref name="path"/>.</exception>
    public static async Task<ControlReply> SendAsync(string path, ControlRequest request, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(Timeout);
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), timeout.Token).ConfigureAwait(false);
        await socket.SendAsync(Encoding.UTF8.GetBytes(request + "\n"), SocketFlags.None, timeout.Token).ConfigureAwait(false);
        socket.Shutdown(SocketShutdown.Send);

        using var reply = new MemoryStream();
        byte[] buffer = new byte[16384];
        int n;
        while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token).ConfigureAwait(false)) > 0)
        {
            reply.Write(buffer, 0, n);
        }

        return ControlReply.Parse(Encoding.UTF8.GetString(reply.GetBuffer(), 0, (int)reply.Length));
    }
}
