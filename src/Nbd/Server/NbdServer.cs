using System.Diagnostics;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.Extensions.Logging;
using Nbd.Logging;
using Nbd.Protocol;
using Nbd.Sessions;
using Nbd.Transport;

namespace Nbd;

/// <summary>
/// An NBD server (fixed newstyle, doc/proto.md of NetworkBlockDevice/nbd) over any number of listeners and
/// already-connected sockets. Each connection runs <see cref="NbdHandshake"/> and then an
/// <see cref="NbdSession"/>. Exports can be added and removed while serving; removal only affects new
/// connections. Lock order: <see cref="_gate"/> guards the export list, the connection set, the per-export
/// counts and the claimed exports, and nothing else is locked while holding it.
/// A connection counts as transmitting to its export from just before the handshake's last reply is sent
/// (<see cref="Admit"/>), so a client that believes it is attached is always counted; an export claimed with
/// <see cref="TryClaimExport"/> (the kernel's zram->claim, for a reset) admits no one until it is released.
/// </summary>
public sealed class NbdServer : IAsyncDisposable
{
    private static readonly TimeSpan DrainPollInterval = TimeSpan.FromMilliseconds(10);

    private readonly NbdServerOptions _options;
    private readonly ILogger<NbdServer> _logger;
    private readonly ILogger<NbdSession> _sessionLogger;
    private readonly object _gate = new();
    private readonly List<NbdExport> _exports = [];
    private readonly Dictionary<string, int> _transmitting = new(StringComparer.Ordinal);
    private readonly HashSet<string> _claimed = new(StringComparer.Ordinal);
    private readonly HashSet<Connection> _connections = [];
    private readonly CancellationTokenSource _stopping = new();
    private readonly ReadTurnWatchdog? _watchdog;
    private long _nextConnectionId;
    private volatile bool _stopped;
    private volatile NbdTlsCredentials? _tlsCredentials;

    public NbdServer(NbdServerOptions options, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        options.Validate();
        _options = options;
        _logger = loggerFactory.CreateLogger<NbdServer>();
        _sessionLogger = loggerFactory.CreateLogger<NbdSession>();
        _watchdog = options.KeepReadTurnGate is not null ? new ReadTurnWatchdog(options) : null;
        _tlsCredentials = options.TlsMode != NbdTlsMode.Off ? new NbdTlsCredentials(options.TlsMode, options.TlsCertificate!, options.TlsClientAuthorities) : null;
    }

    /// <summary>What TLS handshakes use now (null: TLS is off).</summary>
    internal NbdTlsCredentials? TlsCredentials => _tlsCredentials;

    /// <summary>
    /// From now on TLS handshakes present <paramref name="certificate"/> (with its private key) and, when
    /// <paramref name="clientAuthorities"/> is not null, ask for a client certificate one of them issued, under the
    /// rules of <see cref="NbdServerOptions.TlsCertificate"/> and <see cref="NbdServerOptions.TlsClientAuthorities"/>:
    /// a renewed certificate, a new authority, without a restart. Connections that started TLS keep what they
    /// negotiated. The TLS mode is fixed at construction (a server with TLS off has nothing to replace).
    /// </summary>
    public void ReplaceTlsCredentials(X509Certificate2 certificate, X509Certificate2Collection? clientAuthorities)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        if (_options.TlsMode == NbdTlsMode.Off)
        {
            throw new InvalidOperationException("TLS is off on this server: there are no credentials to replace");
        }

        _tlsCredentials = new NbdTlsCredentials(_options.TlsMode, certificate, clientAuthorities);
    }

    /// <summary>Sleeping connection threads woken because a request run with the read turn kept ran long.</summary>
    internal long ReadTurnKicks => _watchdog?.Kicks ?? 0;

    /// <summary>Connections open now, in the handshake or in transmission.</summary>
    public int ConnectionCount
    {
        get
        {
            lock (_gate)
            {
                return _connections.Count;
            }
        }
    }

    /// <summary>Adds an export. The first export added is also the default export (empty name).</summary>
    public void AddExport(NbdExport export)
    {
        ArgumentNullException.ThrowIfNull(export);
        if (export.Name.Length == 0 || Encoding.UTF8.GetByteCount(export.Name) > ProtocolLimits.MaxStringLength)
        {
            throw new ArgumentException($"export name must be 1 to {ProtocolLimits.MaxStringLength} UTF-8 bytes", nameof(export));
        }

        if (export.Device.MinimumBlockSize is not (1 or 512 or 4096))
        {
            throw new ArgumentException("device minimum block size must be 1, 512 or 4096", nameof(export));
        }

        lock (_gate)
        {
            if (_exports.Exists(e => e.Name == export.Name))
            {
                throw new ArgumentException($"export '{export.Name}' already exists", nameof(export));
            }

            _exports.Add(export);
        }
    }

    /// <summary>Removes an export from the list new connections can choose from; open connections to it go on.</summary>
    public bool RemoveExport(string name)
    {
        lock (_gate)
        {
            return _exports.RemoveAll(e => e.Name == name) > 0;
        }
    }

    /// <summary>Live transmission-phase connections to the export.</summary>
    public int GetConnectionCount(string exportName)
    {
        lock (_gate)
        {
            return _transmitting.TryGetValue(exportName, out int count) ? count : 0;
        }
    }

    /// <summary>Claims an export that no connection is transmitting to: until <see cref="ReleaseClaim"/>, the
    /// handshake refuses it (NBD_REP_ERR_UNKNOWN for NBD_OPT_GO, a dropped connection for NBD_OPT_EXPORT_NAME).
    /// Returns false, with the number of connections, when there are some or it is claimed already.</summary>
    public bool TryClaimExport(string exportName, out int connections)
    {
        ArgumentNullException.ThrowIfNull(exportName);
        lock (_gate)
        {
            connections = _transmitting.GetValueOrDefault(exportName);
            return connections == 0 && _claimed.Add(exportName);
        }
    }

    /// <summary>Ends a claim taken with <see cref="TryClaimExport"/>.</summary>
    public void ReleaseClaim(string exportName)
    {
        lock (_gate)
        {
            _claimed.Remove(exportName);
        }
    }

    /// <summary>Accepts connections until <paramref name="cancellationToken"/> is cancelled or the server stops.
    /// Cancelling stops accepting only; open connections are ended by <see cref="StopAsync"/>.</summary>
    public Task ServeAsync(NbdListener listener, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(listener);
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        StartIoThread("accept-nbd", () =>
        {
            try
            {
                AcceptLoop(listener, cancellationToken);
            }
            finally
            {
                done.TrySetResult();
            }
        }, _options);
        return done.Task;
    }

    /// <summary>The accept loop of one listener, on a thread of its own (blocking accepts: see
    /// <see cref="SocketAcceptor"/> for why not the runtime's); ends when the token or <see cref="StopAsync"/> stops it.</summary>
    private void AcceptLoop(NbdListener listener, CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        _logger.Listening(listener.Description);
        while (!linked.IsCancellationRequested)
        {
            Socket? socket;
            try
            {
                socket = listener.Accept(linked.Token);
            }
            catch (ObjectDisposedException)
            {
                break;
            }
            catch (IOException e)
            {
                // EMFILE and friends: keep serving the connections we have, retry shortly.
                _logger.AcceptFailed(listener.Description, e);
                Thread.Sleep(AcceptBackOff.Delay);
                continue;
            }

            if (socket is null)
            {
                break;
            }

            _ = Serve(socket, simpleRepliesOnly: false, fromListener: true, CancellationToken.None);
        }
    }

    /// <summary>Serves one already-connected socket (handshake included) until it closes, on a thread of its own
    /// (see <see cref="NbdSession"/>); the task completes when it has closed. With
    /// <paramref name="simpleRepliesOnly"/> structured replies are refused, because the far end is (or will be
    /// handed to) the kernel's nbd driver. Cancelling the token disconnects the client. Not counted against
    /// <see cref="NbdServerOptions.MaxConnections"/>, which bounds what the listeners accept, and not held to
    /// <see cref="NbdServerOptions.TlsMode"/>: such a socket is the host's own (a socketpair whose other end goes to
    /// the kernel, which speaks no TLS), and never crosses a network.</summary>
    public Task ServeConnectionAsync(Socket connected, bool simpleRepliesOnly, CancellationToken cancellationToken)
        => Serve(connected, simpleRepliesOnly, fromListener: false, cancellationToken);

    private Task Serve(Socket connected, bool simpleRepliesOnly, bool fromListener, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connected);
        UnixSendBuffer.Enlarge(connected);
        var connection = new Connection(Interlocked.Increment(ref _nextConnectionId), connected);
        if (!TryRegister(connection, limited: fromListener))
        {
            connected.Dispose();
            return Task.CompletedTask;
        }

        var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            StartIoThread($"nbd-{connection.Id}", () =>
            {
                try
                {
                    ServeConnection(connection, simpleRepliesOnly, fromListener ? _options.TlsMode : NbdTlsMode.Off, cancellationToken);
                }
                finally
                {
                    closed.SetResult();
                }
            }, _options);
        }
        catch (Exception e)
        {
            // No thread (out of memory or thread limit): refuse this connection, keep serving the others.
            _logger.ConnectionFailed(connection.Id, e);
            Unregister(connection, null);
            connected.Dispose();
            return Task.CompletedTask;
        }

        return closed.Task;
    }

    /// <summary>Starts a named background thread that runs <see cref="NbdServerOptions.IoThreadStarted"/> and
    /// then <paramref name="body"/>.</summary>
    internal static Thread StartIoThread(string name, Action body, NbdServerOptions options)
    {
        Action? started = options.IoThreadStarted;
        var thread = new Thread(() =>
        {
            started?.Invoke();
            body();
        })
        {
            Name = name,
            IsBackground = true,
        };
        thread.Start();
        return thread;
    }

    /// <summary>The whole life of one connection, on its own thread: handshake, then transmission. Blocking
    /// calls throughout; the handshake timeout and cancellation shut the socket down under them.</summary>
    private void ServeConnection(Connection connection, bool simpleRepliesOnly, NbdTlsMode tlsMode, CancellationToken cancellationToken)
    {
        BlockingSocketStream stream = connection.Stream;
        string? exportName = null;
        try
        {
            using CancellationTokenRegistration onCancel = cancellationToken.Register(static c => ((Connection)c!).Abort(), connection);
            _logger.ConnectionOpened(connection.Id, DescribeRemote(connection.Socket));
            HandshakeResult? result;
            // Not ended by the server's stop: a client haggling then gets ERR_SHUTDOWN to its options, and StopAsync
            // cuts it after NbdServerOptions.HandshakeStopWindow.
            using (var handshakeTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                using CancellationTokenRegistration onTimeout = handshakeTimeout.Token.Register(static s => ((BlockingSocketStream)s!).Shutdown(), stream);
                handshakeTimeout.CancelAfter(_options.HandshakeTimeout);
                var handshake = new NbdHandshake(this, _options, _sessionLogger, connection.Id, stream, simpleRepliesOnly, tlsMode);

                // Completes synchronously: every read and write of the stream does.
                result = handshake.RunAsync(handshakeTimeout.Token).GetAwaiter().GetResult();
            }

            if (result is null)
            {
                return;
            }

            // Admitted by the handshake: counted until Unregister, whatever happens from here.
            exportName = result.Export.Name;
            var session = new NbdSession(result, _options, _sessionLogger, connection.Id, stream, _watchdog);
            if (!connection.TryStartSession(session, this))
            {
                // The session never ran, so never disposed the handshake's stream (TLS's, if any).
                result.Stream.Dispose();
                return;
            }

            _logger.TransmissionStarted(connection.Id, exportName, result.Flags.ToString(), result.StructuredReplies);
            session.Run();
        }
        catch (Exception e)
        {
            _logger.ConnectionFailed(connection.Id, e);
        }
        finally
        {
            connection.Ended = true;
            Unregister(connection, exportName);
            stream.Dispose();
            _logger.ConnectionClosed(connection.Id);
        }
    }

    /// <summary>Stops accepting, answers new requests with ESHUTDOWN, waits up to <paramref name="grace"/> for
    /// requests in flight, then closes every connection and returns once every connection's threads have ended: a
    /// device call still running then is finished, not abandoned, since the owner frees its devices next.</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        Connection[] open;
        lock (_gate)
        {
            _stopped = true;
            open = [.. _connections];
        }

        // Before the first await: once StopAsync returns its task, every request read from now on gets ESHUTDOWN.
        foreach (Connection c in open)
        {
            c.BeginShutdown();
        }

        _logger.Stopping(open.Length, grace);
        await _stopping.CancelAsync().ConfigureAwait(false);

        // Clients still haggling get a moment to be told (ERR_SHUTDOWN) and leave (ABORT), as proto.md asks; a short
        // one, so that a client idle in its handshake does not hold the stop for the whole grace.
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < grace && Array.Exists(open, c => c.InFlight > 0 || (c.InHandshake && clock.Elapsed < _options.HandshakeStopWindow)))
        {
            await Task.Delay(DrainPollInterval).ConfigureAwait(false);
        }

        foreach (Connection c in open)
        {
            c.Abort();
        }

        // The connections end promptly once their sockets are closed, but for a device call already running (a
        // 32 MiB write at zstd:22 takes seconds): no time limit, as returning frees the device under it (a SIGSEGV
        // at stop). Device calls always end; none waits for a client.
        clock.Restart();
        bool told = false;
        while (ConnectionCount > 0)
        {
            if (!told && clock.Elapsed > TimeSpan.FromSeconds(5))
            {
                _logger.StillFinishing(ConnectionCount);
                told = true;
            }

            await Task.Delay(DrainPollInterval).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        bool stopped;
        lock (_gate)
        {
            stopped = _stopped;
        }

        if (!stopped)
        {
            await StopAsync(TimeSpan.Zero).ConfigureAwait(false);
        }

        _stopping.Dispose();
        _watchdog?.Dispose();
    }

    internal bool TryGetExport(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out NbdExport? export)
    {
        lock (_gate)
        {
            export = name.Length == 0 ? (_exports.Count > 0 ? _exports[0] : null) : _exports.Find(e => e.Name == name);
            return export is not null;
        }
    }

    internal NbdExport[] SnapshotExports()
    {
        lock (_gate)
        {
            return [.. _exports];
        }
    }

    private bool TryRegister(Connection connection, bool limited)
    {
        lock (_gate)
        {
            if (_stopped)
            {
                return false;
            }

            if (limited && _connections.Count >= _options.MaxConnections)
            {
                _logger.TooManyConnections(DescribeRemote(connection.Socket), _options.MaxConnections);
                return false;
            }

            _connections.Add(connection);
            return true;
        }
    }

    private void Unregister(Connection connection, string? exportName)
    {
        lock (_gate)
        {
            _connections.Remove(connection);
            if (exportName is not null)
            {
                ReleaseLocked(exportName);
            }
        }
    }

    /// <summary><see cref="StopAsync"/> has begun: handshakes answer options with ERR_SHUTDOWN.</summary>
    internal bool IsStopping => _stopped;

    /// <summary>Counts one more connection transmitting to <paramref name="export"/>, unless the server is
    /// stopping, the export was removed or it is claimed. The handshake calls it before its last reply; the
    /// count is given back by <see cref="Release"/> or, once the handshake has returned, when the connection
    /// ends.</summary>
    internal OptionReplyType Admit(NbdExport export)
    {
        lock (_gate)
        {
            if (_stopped)
            {
                return OptionReplyType.ErrShutdown;
            }

            if (!_exports.Contains(export) || _claimed.Contains(export.Name))
            {
                return OptionReplyType.ErrUnknown;
            }

            _transmitting[export.Name] = _transmitting.GetValueOrDefault(export.Name) + 1;
            return OptionReplyType.Ack;
        }
    }

    /// <summary>Gives back an <see cref="Admit"/> whose connection never reached transmission.</summary>
    internal void Release(string exportName)
    {
        lock (_gate)
        {
            ReleaseLocked(exportName);
        }
    }

    private void ReleaseLocked(string exportName)
    {
        int count = _transmitting.GetValueOrDefault(exportName);
        if (count <= 1)
        {
            _transmitting.Remove(exportName);
        }
        else
        {
            _transmitting[exportName] = count - 1;
        }
    }

    private static string DescribeRemote(Socket socket)
    {
        try
        {
            return socket.RemoteEndPoint?.ToString() is { Length: > 0 } remote ? remote : "local socket";
        }
        catch (SocketException)
        {
            return "unknown";
        }
    }

    /// <summary>A connection as the server tracks it: its socket until the handshake ends, then its session.</summary>
    private sealed class Connection(long id, Socket socket)
    {
        /// <summary>The only stream over the socket: its calls block, so it never leaves blocking mode.</summary>
        public BlockingSocketStream Stream { get; } = new(socket);

        private NbdSession? _session;
        private bool _shuttingDown;

        public long Id { get; } = id;

        public Socket Socket { get; } = socket;

        public int InFlight => Volatile.Read(ref _session)?.InFlight ?? 0;

        /// <summary>The connection's thread has finished with it.</summary>
        public volatile bool Ended;

        /// <summary>Still in its handshake: no session yet, and not ended.</summary>
        public bool InHandshake => Volatile.Read(ref _session) is null && !Ended;

        public bool TryStartSession(NbdSession session, NbdServer server)
        {
            lock (server._gate)
            {
                if (server._stopped)
                {
                    return false;
                }

                _session = session;
                if (_shuttingDown)
                {
                    session.BeginShutdown();
                }

                return true;
            }
        }

        public void BeginShutdown()
        {
            _shuttingDown = true;
            Volatile.Read(ref _session)?.BeginShutdown();
        }

        public void Abort()
        {
            if (Volatile.Read(ref _session) is { } session)
            {
                session.Abort();
            }
            else
            {
                // Ends the handshake's blocked call; the connection's thread closes the socket.
                Stream.Shutdown();
            }
        }
    }
}
