using System.Security.Cryptography.X509Certificates;

namespace Nbd;

/// <summary>The server's limits and TLS. The defaults and ranges are public so that a configuration layer can
/// offer and check the same ones.</summary>
public sealed class NbdServerOptions
{
    public const int DefaultMaxConnections = 256;
    public const int MaxConnectionsCeiling = 65536;
    public const int DefaultMaxInFlightPerConnection = 64;
    public const int MaxInFlightPerConnectionCeiling = 4096;
    public const int DefaultMaxPayload = 32 << 20;
    public const int MaxPayloadFloor = 4096;
    public const int MaxPayloadCeiling = 1 << 30;
    public const int DefaultHandshakeTimeoutSeconds = 30;
    public const int DefaultWorkerThreadsPerConnection = 4;
    public const int WorkerThreadsPerConnectionCeiling = 64;
    public const int DefaultBusyPollMicroseconds = 50;
    public const int BusyPollMicrosecondsCeiling = 1000;

    /// <summary>Connections (handshaking or transmitting) the listeners accept beyond this are closed at once. A socket
    /// the owner hands over (<see cref="NbdServer.ServeConnectionAsync"/>: the daemon's own attach) is served anyway,
    /// so that clients of the socket cannot keep the kernel device from being attached.</summary>
    public int MaxConnections { get; init; } = DefaultMaxConnections;

    /// <summary>Requests one connection may have in flight (at most one per serving thread,
    /// <see cref="WorkerThreadsPerConnection"/>); the server stops reading that socket when reached.</summary>
    public int MaxInFlightPerConnection { get; init; } = DefaultMaxInFlightPerConnection;

    /// <summary>Largest READ or WRITE payload (NBD_INFO_BLOCK_SIZE maximum); larger ones (and CACHE) get EINVAL.</summary>
    public int MaxPayload { get; init; } = DefaultMaxPayload;

    /// <summary>Time a client has from connecting to entering transmission.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(DefaultHandshakeTimeoutSeconds);

    /// <summary>Threads that serve one connection, taking turns at reading its requests and running them; one
    /// request in flight each, so the connection's requests in flight are the smaller of this and
    /// <see cref="MaxInFlightPerConnection"/>.</summary>
    public int WorkerThreadsPerConnection { get; init; } = DefaultWorkerThreadsPerConnection;

    /// <summary>How long the thread with a connection's read turn polls the socket (sched_yield between looks, so
    /// any other runnable thread goes first) before it blocks in recv, when it has nothing buffered and a CPU is
    /// free (no more runnable threads than CPUs: polling then takes time from nobody): what
    /// net.core.busy_poll does for network sockets. A client waiting on each reply (queue depth 1) sends its
    /// next request within that, and finds the thread still running instead of asleep (on a virtual machine,
    /// instead of a halted vCPU to bring back). 0 turns it off.</summary>
    public int BusyPollMicroseconds { get; init; } = DefaultBusyPollMicroseconds;

    /// <summary>Asked before each poll whether a CPU is free for it (<see cref="Threading.RunQueue"/>); tests
    /// replace it to poll whatever the machine does.</summary>
    internal Func<bool> BusyPollGate { get; init; } = Threading.RunQueue.Machine.HasIdleCpu;

    /// <summary>Asked, for a request read at queue depth 1, whether a CPU is free; if so its thread keeps the read
    /// turn while it runs it (<see cref="Sessions.NbdSession"/>, made safe by <see cref="Sessions.ReadTurnWatchdog"/>).
    /// Null: the turn is always handed on. Tests replace it to keep the turn whatever the machine does, or never.</summary>
    internal Func<bool>? KeepReadTurnGate { get; init; } = Threading.RunQueue.Machine.HasIdleCpu;

    /// <summary>How often the <see cref="Sessions.ReadTurnWatchdog"/> looks while connections keep their read turns, and
    /// how long a kept request may run before another reader is woken. Tests that count its kicks lengthen it, so that
    /// a thread preempted on a loaded machine is not taken for a request that waits.</summary>
    internal TimeSpan ReadTurnWatchdogInterval { get; init; } = Sessions.ReadTurnWatchdog.DefaultInterval;

    /// <summary>How long a stop waits for clients still in their handshake to be told (ERR_SHUTDOWN) and leave (ABORT):
    /// short, so that a client idle in its handshake does not hold the stop for the whole grace. Tests that play such a
    /// client on a loaded machine lengthen it.</summary>
    internal TimeSpan HandshakeStopWindow { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Runs on the thread that sent a batch of queued replies (given the bytes sent), after the write returned
    /// and before they stop counting as in flight: tests hold it there, as a writer preempted by the client it woke
    /// would be.</summary>
    internal SentBytesObserver? RepliesWritten { get; init; }

    /// <summary>A serving thread runs under SCHED_BATCH while other requests of its connection are in flight or
    /// buffered, and under SCHED_OTHER (the default policy) otherwise (see <see cref="Sessions.NbdSession"/>).
    /// False: always SCHED_OTHER.</summary>
    public bool BatchSchedulingWhenBusy { get; init; } = true;

    /// <summary>Runs first on every thread the server starts to serve a connection (its reader and its
    /// workers), on that thread: the daemon marks them PR_SET_IO_FLUSHER here.</summary>
    public Action? IoThreadStarted { get; init; }

    public NbdTlsMode TlsMode { get; init; } = NbdTlsMode.Off;

    /// <summary>Server certificate with its private key; required unless <see cref="TlsMode"/> is Off.</summary>
    public X509Certificate2? TlsCertificate { get; init; }

    /// <summary>
    /// The certificate authorities a client's certificate must chain to, as nbdkit's --tls-verify-peer: the TLS
    /// handshake asks for a client certificate and fails without one they issued (no revocation check: there is no
    /// CRL to ask). Null: no client certificate is asked for. Only with <see cref="TlsMode"/> Required, since
    /// Optional would let a client in unchecked by not starting TLS.
    /// </summary>
    public X509Certificate2Collection? TlsClientAuthorities { get; init; }

    internal void Validate()
    {
        if (MaxConnections < 1 || MaxConnections > MaxConnectionsCeiling)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxConnections), MaxConnections, "must be between 1 and 65536");
        }

        if (MaxInFlightPerConnection < 1 || MaxInFlightPerConnection > MaxInFlightPerConnectionCeiling)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxInFlightPerConnection), MaxInFlightPerConnection, "must be between 1 and 4096");
        }

        if (WorkerThreadsPerConnection < 1 || WorkerThreadsPerConnection > WorkerThreadsPerConnectionCeiling)
        {
            throw new ArgumentOutOfRangeException(nameof(WorkerThreadsPerConnection), WorkerThreadsPerConnection, "must be between 1 and 64");
        }

        if (BusyPollMicroseconds < 0 || BusyPollMicroseconds > BusyPollMicrosecondsCeiling)
        {
            throw new ArgumentOutOfRangeException(nameof(BusyPollMicroseconds), BusyPollMicroseconds, "must be between 0 and 1000");
        }

        if (MaxPayload < MaxPayloadFloor || MaxPayload > MaxPayloadCeiling)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxPayload), MaxPayload, "must be between 4096 and 1 GiB");
        }

        if (HandshakeTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(HandshakeTimeout), HandshakeTimeout, "must be positive");
        }

        NbdTlsCredentials.Check(TlsMode, TlsCertificate, TlsClientAuthorities, nameof(TlsCertificate), nameof(TlsClientAuthorities));
    }
}
