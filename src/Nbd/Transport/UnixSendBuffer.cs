using System.Net.Sockets;

namespace Nbd.Transport;

/// <summary>
/// A larger send buffer for Unix-socket connections. Replies wait in the kernel until the client reads them, up
/// to the socket's send buffer (net.core.wmem_default, 208 KiB on most systems): one 128 KiB read reply and part
/// of the next fill it, so at queue depth 16 the sending thread sleeps in send(2) after almost every large reply,
/// the connection's other threads queue behind its send turn, and each reply the client reads wakes them again
/// (about two context switches a request, measured with fio's 128 KiB sequential reads; 0.6-1.0 with this).
/// What a slow client can leave in the kernel is bounded by this per connection (and by the requests it has in
/// flight). TCP connections are left alone: the kernel tunes their buffers itself, and a fixed SO_SNDBUF would
/// switch that off.
/// </summary>
internal static class UnixSendBuffer
{
    /// <summary>What SO_SNDBUF asks for; the kernel doubles it for its bookkeeping and caps it at twice
    /// net.core.wmem_max (so where that is the usual 208 KiB, the buffer is 416 KiB).</summary>
    public const int Requested = 2 << 20;

    /// <summary>Best effort: a socket that refuses keeps the buffer it has.</summary>
    public static void Enlarge(Socket socket)
    {
        if (socket.AddressFamily != AddressFamily.Unix)
        {
            return;
        }

        try
        {
            if (socket.SendBufferSize < 2 * Requested)
            {
                socket.SendBufferSize = Requested;
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Not fatal: the connection works with the default buffer, only with more context switches.
        }
    }
}
