using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ZramDaemon.Tests.Configuration;

/// <summary>A self-signed ECDSA certificate (CN=zramd-test, valid a day either side of now) and its key, written as
/// cert.pem and key.pem into a directory, for tls-certificate and tls-key.</summary>
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
}
