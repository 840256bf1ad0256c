using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Nbd.Transport;

/// <summary>
/// A connected socket as a stream whose every call, the async ones included, is a blocking system call on the
/// calling thread. A connection lives on threads of its own (<see cref="Sessions.NbdSession"/>), so blocking is
/// what we want; and because the socket is never used asynchronously, .NET never switches its descriptor to
/// non-blocking mode or registers it with the runtime's epoll thread. Receive and send are then plain recv(2)
/// and send(2): no allocation, no dependence on the shared thread pool or the epoll thread, which is what a
/// server backing swap needs. The handshake (and SslStream under TLS) runs over this stream unchanged.
///
/// Cancellation: a blocked call cannot see a token. Whoever cancels shuts the socket down
/// (<see cref="Shutdown"/>), which ends the blocked call with end of stream; a read that ends that way while its
/// token is cancelled throws <see cref="OperationCanceledException"/>, so callers still see a cancellation.
/// </summary>
internal sealed class BlockingSocketStream(Socket socket) : Stream
{
    public Socket Socket { get; } = socket;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    /// <summary>Ends calls blocked in other threads (they see end of stream or a failed send); safe to call
    /// any number of times, from any thread, before or after the socket is closed. The descriptor itself is only
    /// closed by <see cref="Stream.Dispose()"/>, once no thread uses it, so it cannot be reused under them.</summary>
    public void Shutdown()
    {
        try
        {
            Socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Not connected any more, or already closed: either way nothing is blocked on it.
        }
    }

    /// <summary>Returns 0 at end of stream and after <see cref="Shutdown"/>; throws IOException on a socket error.</summary>
    public override int Read(Span<byte> buffer)
    {
        int n = Socket.Receive(buffer, SocketFlags.None, out SocketError error);
        if (error != SocketError.Success)
        {
            Throw(error);
        }

        return n;
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    /// <summary>Receives what has already arrived, without blocking (MSG_DONTWAIT): the byte count, or -1 when
    /// nothing is waiting. End of stream and socket errors also give -1, and are left for the next blocking
    /// <see cref="Read(Span{byte})"/>, which sees them again and reports them as usual.</summary>
    public int ReadAvailable(Span<byte> buffer)
    {
        if (buffer.IsEmpty)
        {
            return -1;
        }

        nint n;
        try
        {
            n = Native.Libc.Recv(Socket.SafeHandle, ref MemoryMarshal.GetReference(buffer), (nuint)buffer.Length, Native.Libc.MsgDontWait);
        }
        catch (ObjectDisposedException)
        {
            return -1;
        }

        return n > 0 ? (int)n : -1;
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            int n = Socket.Send(buffer, SocketFlags.None, out SocketError error);
            if (error != SocketError.Success)
            {
                Throw(error);
            }

            buffer = buffer[n..];
        }
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    /// <summary>True when bytes are waiting to be read (FIONREAD), i.e. the client has already sent more.</summary>
    public bool HasPendingInput()
    {
        try
        {
            return Socket.Available > 0;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        int n = Read(buffer.Span);
        if (n == 0 && !buffer.IsEmpty)
        {
            cancellationToken.ThrowIfCancellationRequested();
        }

        return new ValueTask<int>(n);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Write(buffer.Span);
        return ValueTask.CompletedTask;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Socket.Dispose();
        }

        base.Dispose(disposing);
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void Throw(SocketError error) => throw new IOException("socket: " + error, new SocketException((int)error));
}
