using System.Security.Cryptography.X509Certificates;

namespace ZramDaemon.Configuration;

/// <summary>Everything the daemon runs with, validated: the result of file &lt; ZRAMD_* &lt; command line.</summary>
public sealed record ZramdConfiguration
{
    public const int DefaultSocketMode = 0x1B0; // 0660

    /// <summary>The file that was read, or null when none was (the embedded default).</summary>
    public string? ConfigPath { get; init; }

    public required IReadOnlyList<ListenAddress> Listen { get; init; }

    /// <summary>The permission bits of the NBD Unix sockets.</summary>
    public int SocketMode { get; init; } = DefaultSocketMode;

    /// <summary>The group that owns the NBD Unix sockets (e.g. disk), or null to keep ours.</summary>
    public string? SocketGroup { get; init; }

    /// <summary>The control socket (mode 0600) that <c>zramd status</c> and the other verbs talk to.</summary>
    public required string ControlPath { get; init; }

    public Nbd.NbdTlsMode TlsMode { get; init; }

    public string? TlsCertificatePath { get; init; }

    public string? TlsKeyPath { get; init; }

    /// <summary>Loaded from <see cref="TlsCertificatePath"/> and <see cref="TlsKeyPath"/> when TLS is on.</summary>
    public X509Certificate2? TlsCertificate { get; init; }

    /// <summary>mlockall at start; default on when running as root.</summary>
    public bool LockMemory { get; init; }

    public Serilog.Events.LogEventLevel LogLevel { get; init; } = Serilog.Events.LogEventLevel.Information;

    /// <summary>MemTotal in MiB, the <c>ram</c> of size expressions.</summary>
    public double RamMiB { get; init; }

    public required IReadOnlyList<DeviceConfiguration> Devices { get; init; }
}
