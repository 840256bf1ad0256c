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
        using Socket socket = await ConnectAsync(path, timeout.Token).ConfigureAwait(false);
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

    /// <summary>Connects, waiting while the daemon's backlog is full: a Unix socket's non-blocking connect (the
    /// runtime's) fails with EAGAIN then instead of waiting, and other clients connecting at the same moment must not
    /// make a live daemon look gone.</summary>
    private static async Task<Socket> ConnectAsync(string path, CancellationToken ct)
    {
        var endPoint = new UnixDomainSocketEndPoint(path);
        while (true)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(endPoint, ct).ConfigureAwait(false);
                return socket;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
            {
                socket.Dispose();
                await Task.Delay(BacklogRetry, ct).ConfigureAwait(false);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
    }

    private static readonly TimeSpan BacklogRetry = TimeSpan.FromMilliseconds(20);
}
