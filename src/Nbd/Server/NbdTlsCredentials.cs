using System.Security.Cryptography.X509Certificates;

namespace Nbd;

/// <summary>
/// What a TLS handshake presents and checks: the server's certificate (with its private key) and, when clients must
/// present one, the authorities their certificates must chain to. Immutable: <see cref="NbdServer.ReplaceTlsCredentials"/>
/// swaps the whole set, so a handshake sees the old one or the new one, never half of each.
/// </summary>
internal sealed class NbdTlsCredentials
{
    /// <summary>Checks the pair against <paramref name="mode"/>, as <see cref="NbdServerOptions"/> states the rules.</summary>
    internal NbdTlsCredentials(NbdTlsMode mode, X509Certificate2 certificate, X509Certificate2Collection? clientAuthorities)
    {
        Check(mode, certificate, clientAuthorities, nameof(certificate), nameof(clientAuthorities));
        Certificate = certificate;
        ClientAuthorities = clientAuthorities;
    }

    public X509Certificate2 Certificate { get; }

    /// <summary>Null: no client certificate is asked for.</summary>
    public X509Certificate2Collection? ClientAuthorities { get; }

    /// <summary>The rules for a server certificate and client authorities under <paramref name="mode"/>, in one place.</summary>
    internal static void Check(NbdTlsMode mode, X509Certificate2? certificate, X509Certificate2Collection? clientAuthorities, string certificateName, string authoritiesName)
    {
        if (mode != NbdTlsMode.Off && (certificate is null || !certificate.HasPrivateKey))
        {
            throw new ArgumentException($"TLS mode {mode} needs a certificate with its private key", certificateName);
        }

        if (clientAuthorities is not null && (mode != NbdTlsMode.Required || clientAuthorities.Count == 0))
        {
            throw new ArgumentException("client certificates are checked only with TLS mode Required, against at least one authority", authoritiesName);
        }
    }
}
