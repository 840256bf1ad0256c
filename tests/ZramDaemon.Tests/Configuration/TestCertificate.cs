using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ZramDaemon.Tests.Configuration;

/// <summary>A self-signed ECDSA certificate (CN=zramd-test, valid a day either side of now) and its key, written as
/// cert.pem and key.pem into a directory, for tls-certificate and tls-key; and an authority with a client certificate,
/// for tls-client-ca.</summary>
internal static class TestCertificate
{
    public static (string CertPath, string KeyPath) Write(string dir)
    {
        using var key = ECDsa.Create();
        var request = new CertificateRequest("CN=zramd-test", key, HashAlgorithmName.SHA256);
        using X509Certificate2 certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        string certPath = Path.Combine(dir, "cert.pem"), keyPath = Path.Combine(dir, "key.pem");
        File.WriteAllText(certPath, certificate.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        return (certPath, keyPath);
    }

    /// <summary>
    /// An authority (ca.pem) and a client certificate it signed for clientAuth, with its key, written where libnbd's
    /// tls-certificates directory looks for them (client-cert.pem, client-key.pem); returns the authority's path.
    /// </summary>
    public static string WriteClientAuthority(string dir)
    {
        Directory.CreateDirectory(dir);
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=zramd-test client CA", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        using X509Certificate2 ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(2));

        using var clientKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var clientRequest = new CertificateRequest("CN=zramd-test client", clientKey, HashAlgorithmName.SHA256);
        clientRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        clientRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.2")], false));
        using X509Certificate2 client = clientRequest.Create(ca, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(1), RandomNumberGenerator.GetBytes(8));

        string caPath = Path.Combine(dir, "ca.pem");
        File.WriteAllText(caPath, ca.ExportCertificatePem());
        File.WriteAllText(Path.Combine(dir, "client-cert.pem"), client.ExportCertificatePem());
        File.WriteAllText(Path.Combine(dir, "client-key.pem"), clientKey.ExportPkcs8PrivateKeyPem());
        return caPath;
    }
}
