using System.Security.Cryptography.X509Certificates;

namespace Nbd;

public sealed class NbdServerOptions
{
    /// <summary>Connections (handshaking or transmitting) beyond this are closed as soon as accepted.</summary>
    public int MaxConnections { get; init; } = 256;

    /// <summary>Requests one connection may have in flight; the server stops reading that socket when reached.</summary>
    public int MaxInFlightPerConnection { get; init; } = 64;

    /// <summary>Largest READ or WRITE payload (NBD_INFO_BLOCK_SIZE maximum); larger ones get EOVERFLOW.</summary>
    public int MaxPayload { get; init; } = 32 << 20;

    /// <summary>Time a client has from connecting to entering transmission.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(30);

    public NbdTlsMode TlsMode { get; init; } = NbdTlsMode.Off;

    /// <summary>Server certificate with its private key; required unless <see cref="TlsMode"/> is Off.</summary>
    public X509Certificate2? TlsCertificate { get; init; }

    internal void Validate()
    {
        if (MaxConnections < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxConnections), MaxConnections, "must be at least 1");
        }

        if (MaxInFlightPerConnection < 1 || MaxInFlightPerConnection > 4096)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxInFlightPerConnection), MaxInFlightPerConnection, "must be between 1 and 4096");
        }

        if (MaxPayload < 4096 || MaxPayload > (1 << 30))
        {
            throw new ArgumentOutOfRangeException(nameof(MaxPayload), MaxPayload, "must be between 4096 and 1 GiB");
        }

        if (HandshakeTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(HandshakeTimeout), HandshakeTimeout, "must be positive");
        }

        if (TlsMode != NbdTlsMode.Off && (TlsCertificate is null || !TlsCertificate.HasPrivateKey))
        {
            throw new ArgumentException($"TLS mode {TlsMode} needs a certificate with its private key", nameof(TlsCertificate));
        }
    }
}
