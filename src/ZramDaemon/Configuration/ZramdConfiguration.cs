using System.Security.Cryptography.X509Certificates;

namespace ZramDaemon.Configuration;

/// <summary>Everything the daemon runs with, validated: the result of file &lt; ZRAMD_* &lt; command line.</summary>
public sealed record ZramdConfiguration
{
    public const int DefaultSocketMode = 0x1B0; // 0660

    /// <summary>The NBD sockets' group when socket-group is not set: members of disk may open block devices anyway.</summary>
    public const string DefaultSocketGroup = "disk";

    /// <summary>The file that was read, or null when none was (the embedded default).</summary>
    public string? ConfigPath { get; init; }

    public required IReadOnlyList<ListenAddress> Listen { get; init; }

    /// <summary>The permission bits of the NBD Unix sockets.</summary>
    public int SocketMode { get; init; } = DefaultSocketMode;

    /// <summary>The group that owns the NBD Unix sockets (default disk), or null to keep ours.</summary>
    public string? SocketGroup { get; init; }

    /// <summary><see cref="SocketGroup"/>'s id, looked up once by the loader: the listener chowns to this number.</summary>
    public uint? SocketGroupId { get; init; }

    /// <summary>Why the NBD sockets keep our own group although socket-group was not set (no group disk, or
    /// not root and not a member of it), for a warning at start; null otherwise.</summary>
    public string? SocketGroupFallback { get; init; }

    /// <summary>The control socket (mode 0600) that <c>zramd status</c> and the other verbs talk to.</summary>
    public required string ControlPath { get; init; }

    public Nbd.NbdTlsMode TlsMode { get; init; }

    public string? TlsCertificatePath { get; init; }

    public string? TlsKeyPath { get; init; }

    /// <summary>tls-client-ca: the authorities' PEM file, when clients must present a certificate one of them issued.</summary>
    public string? TlsClientCaPath { get; init; }

    /// <summary>Loaded from <see cref="TlsClientCaPath"/>; null: no client certificate is asked for.</summary>
    public X509Certificate2Collection? TlsClientAuthorities { get; init; }

    /// <summary>Loaded from <see cref="TlsCertificatePath"/> and <see cref="TlsKeyPath"/> when TLS is on.</summary>
    public X509Certificate2? TlsCertificate { get; init; }

    /// <summary>NBD connections (handshaking or transmitting) at once; more are closed at accept.</summary>
    public int MaxConnections { get; init; } = Nbd.NbdServerOptions.DefaultMaxConnections;

    /// <summary>Requests one NBD connection may have in flight before the server stops reading it.</summary>
    public int MaxInFlightPerConnection { get; init; } = Nbd.NbdServerOptions.DefaultMaxInFlightPerConnection;

    /// <summary>Threads serving each NBD connection, as nbdkit's --threads (at most <see cref="MaxInFlightPerConnection"/>
    /// start: a thread runs one request at a time).</summary>
    public int ThreadsPerConnection { get; init; } = Nbd.NbdServerOptions.DefaultWorkerThreadsPerConnection;

    /// <summary>Largest READ or WRITE payload in bytes; larger requests get EINVAL.</summary>
    public int MaxPayload { get; init; } = Nbd.NbdServerOptions.DefaultMaxPayload;

    /// <summary>Time an NBD client has from connecting to entering transmission.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(Nbd.NbdServerOptions.DefaultHandshakeTimeoutSeconds);

    /// <summary>Microseconds a connection's reading thread polls its socket before it blocks (0: off).</summary>
    public int BusyPollMicroseconds { get; init; } = Nbd.NbdServerOptions.DefaultBusyPollMicroseconds;

    /// <summary>mlockall at start; default on when running as root.</summary>
    public bool LockMemory { get; init; }

    public Serilog.Events.LogEventLevel LogLevel { get; init; } = Serilog.Events.LogEventLevel.Information;

    /// <summary>MemTotal in MiB, the <c>ram</c> of size expressions; null when /proc/meminfo cannot be read.</summary>
    public double? RamMiB { get; init; }

    public required IReadOnlyList<DeviceConfiguration> Devices { get; init; }
}
