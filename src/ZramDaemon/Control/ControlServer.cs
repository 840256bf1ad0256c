using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Nbd;

namespace ZramDaemon.Control;

/// <summary>
/// The control socket: a Unix stream socket with mode 0600 (only root, or the user running zramd, may
/// change devices). Each connection carries one request line and gets one JSON reply line, then closes.
/// Requests run on the thread pool: it is the control plane, not the I/O path. Connections are accepted on a thread of
/// the server's own, by <see cref="SocketAcceptor"/> (the runtime's accept dies on some client addresses).
/// <see cref="DisposeAsync"/> returns only
/// once every request it started has ended: the daemon frees its devices right after, and a verb still running
/// (a recompress takes up to 5 s) would use freed native memory.
/// </summary>
public sealed partial class ControlServer : IAsyncDisposable
{
    private static readonly TimeSpan DefaultClientTimeout = TimeSpan.FromSeconds(10);

    // Clients of a script running verbs in parallel queue here; the client waits while it is full (ControlClient).
    private const int Backlog = 128;

    private readonly Socket _socket;
    private readonly UnixSocketFile _file;
    private int _disposed;
    private readonly SocketAcceptor _acceptor;
    private readonly IControlHandler _handler;
    private readonly ILogger _logger;
    private readonly TimeSpan _clientTimeout;
    private readonly CancellationTokenSource _stop = new();
    private Task? _acceptLoop;

    // The requests being served; the accept loop adds, each removes itself when done (under _servingLock).
    private readonly HashSet<Task> _serving = [];

    // Connections accepted and not yet closed (see AcceptLoop).
    private const int MaxClients = 256;
    private readonly SemaphoreSlim _inService = new(MaxClients);
    private readonly Lock _servingLock = new();

    private ControlServer(UnixSocketFile file, Socket socket, IControlHandler handler, ILogger logger, TimeSpan clientTimeout)
    {
        _file = file;
        _clientTimeout = clientTimeout;
        _socket = socket;
        _acceptor = new SocketAcceptor(socket, noDelay: false);
        _handler = handler;
        _logger = logger;
    }

    public string Path => _file.Path;

    /// <summary>Binds <paramref name="path"/> (mode 0600) and starts answering. A stale socket file left by a
    /// crashed daemon is replaced; a live one (another zramd answering) is an error.</summary>
    /// <param name="clientTimeout">How long the client may take to send its request, and again to take the
    /// reply (10 s by default). The handler's own time is not counted: the verbs bound theirs.</param>
    public static ControlServer Start(string path, IControlHandler handler, ILogger logger, TimeSpan? clientTimeout = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ArgumentNullException.ThrowIfNull(logger);
        UnixSocketFile.RemoveStale(path, "a running zramd");
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        UnixSocketFile? file = null;
        try
        {
            file = UnixSocketFile.Bind(socket, path);

            // Before listen(): nobody can connect while the file still has the umask's mode.
            if (OperatingSystem.IsWindows())
            {
                throw new PlatformNotSupportedException("zramd runs on Linux");
            }

            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            socket.Listen(Backlog);
        }
        catch
        {
            socket.Dispose();
            file?.Delete();
            throw;
        }

        ControlServer server;
        try
        {
            server = new ControlServer(file, socket, handler, logger, clientTimeout ?? DefaultClientTimeout);
        }
        catch
        {
            socket.Dispose();
            file.Delete();
            throw;
        }

        var loopEnded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        server._acceptLoop = loopEnded.Task;
        new Thread(() =>
        {
            try
            {
                server.AcceptLoop();
            }
            finally
            {
                loopEnded.TrySetResult();
            }
        })
        {
            Name = "zramd-control",
            IsBackground = true,
        }.Start();
        return server;
    }

    private void AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            // At most MaxClients connections in service: the accept thread outruns the thread pool that serves them, and
            // a burst of clients would otherwise hold a descriptor each until the daemon had none left (for its NBD
            // clients too). The rest wait in the backlog, and ControlClient waits while that is full.
            try
            {
                _inService.Wait(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            Socket? client;
            try
            {
                client = _acceptor.Accept();
            }
            catch (IOException e)
            {
                // EMFILE and friends: serve the requests we have, retry shortly rather than spin.
                _inService.Release();
                LogAcceptFailed(e.Message);
                Thread.Sleep(AcceptBackOff.Delay);
                continue;
            }

            if (client is null)
            {
                _inService.Release();
                return;
            }

            Task serve = Task.Run(async () =>
            {
                try
                {
                    await ServeAsync(client).ConfigureAwait(false);
                }
                finally
                {
                    _inService.Release();
                }
            });
            lock (_servingLock)
            {
                _serving.Add(serve);
            }

            // Registered after the Add, so it runs after it even if the request is already done.
            _ = serve.ContinueWith(
                done =>
                {
                    lock (_servingLock)
                    {
                        _serving.Remove(done);
                    }
                },
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
        }
    }

    private async Task ServeAsync(Socket client)
    {
        using (client)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            timeout.CancelAfter(_clientTimeout);
            try
            {
                string? line = await ReadLineAsync(client, timeout.Token).ConfigureAwait(false);
                ControlReply reply;
                if (line is null)
                {
                    reply = ControlReply.Failure($"send one request line of at most {ControlRequest.MaxLineBytes} bytes, ended by a newline");
                }
                else if (!ControlRequest.TryParse(line, out ControlRequest? request, out string error))
                {
                    reply = ControlReply.Failure(error);
                }
                else
                {
                    LogRequest(request.ToString());
                    try
                    {
                        reply = _handler.Handle(request, _stop.Token);
                    }
#pragma warning disable CA1031 // One failing request must not take the control socket down; it is reported.
                    catch (Exception e)
#pragma warning restore CA1031
                    {
                        LogRequestFailed(e, request.ToString());
                        reply = ControlReply.Failure($"{request.Verb} failed: {e.Message}");
                    }
                }

                // A fresh timeout for the reply, not cut by a stop: a run that took long on a loaded machine
                // (writeback, recompress), or that a stop waited for, must still be answered, or the client sees no
                // reply for work that was done.
                using var replying = new CancellationTokenSource(_clientTimeout);
                await client.SendAsync(reply.ToJsonLine(), SocketFlags.None, replying.Token).ConfigureAwait(false);
                client.Shutdown(SocketShutdown.Send);

                // Closing with unread input would reset the connection and could destroy the reply before the
                // client reads it (an over-long request): read what is left, up to a bound, first. A stop cuts this
                // short: a client that was answered and keeps its end open must not hold up the daemon's stop.
                using var draining = CancellationTokenSource.CreateLinkedTokenSource(replying.Token, _stop.Token);
                byte[] rest = new byte[4096];
                for (int total = 0; total < 1 << 20;)
                {
                    int n = await client.ReceiveAsync(rest, SocketFlags.None, draining.Token).ConfigureAwait(false);
                    if (n == 0)
                    {
                        break;
                    }

                    total += n;
                }
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                // The client went away or was too slow: nothing to answer.
            }
        }
    }

    /// <summary>Reads up to the first newline (or end of stream); null when the line is too long or missing.</summary>
    private static async Task<string?> ReadLineAsync(Socket client, CancellationToken ct)
    {
        byte[] buffer = new byte[ControlRequest.MaxLineBytes + 1];
        int filled = 0;
        while (filled < buffer.Length)
        {
            int n = await client.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, ct).ConfigureAwait(false);
            if (n == 0)
            {
                break;
            }

            int newline = Array.IndexOf(buffer, (byte)'\n', filled, n);
            filled += n;
            if (newline >= 0)
            {
                return Encoding.UTF8.GetString(buffer, 0, newline).TrimEnd('\r');
            }
        }

        return filled is > 0 and <= ControlRequest.MaxLineBytes ? Encoding.UTF8.GetString(buffer, 0, filled) : null;
    }

    /// <summary>The daemon's stop began: no request is taken from here on, and those running are told to stop (a run
    /// ends at its next page; a reset not yet begun is refused), so that verbs sent around SIGTERM do not hold the stop
    /// for their whole length (a burst of resets and writeback runs held one for 74 s). <see cref="DisposeAsync"/> then
    /// waits for them.</summary>
    public void BeginStop()
    {
        _stop.Cancel();
        _acceptor.Stop();
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        _acceptor.Stop();
        if (_acceptLoop is not null)
        {
            await _acceptLoop.ConfigureAwait(false);
        }

        // The socket closes only once no accept uses its descriptor.
        _acceptor.Dispose();

        // While the socket still holds the file's inode (UnixSocketFile.Delete compares it): once closed, a file bound
        // at the path since could get the same inode number and pass for ours.
        _file.Delete();
        _socket.Dispose();

        // The loop has ended: no request starts any more. Those running may still be reading their line (the stop
        // cancels that) or running their verb (bounded by the verb itself); wait for both.
        Task[] serving;
        lock (_servingLock)
        {
            serving = [.. _serving];
        }

        await Task.WhenAll(serving).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);

        _stop.Dispose();
        _inService.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "control: {Request}")]
    private partial void LogRequest(string request);

    [LoggerMessage(Level = LogLevel.Error, Message = "control: {Request} failed")]
    private partial void LogRequestFailed(Exception e, string request);

    [LoggerMessage(Level = LogLevel.Warning, Message = "control: accept failed: {Error}")]
    private partial void LogAcceptFailed(string error);
}
