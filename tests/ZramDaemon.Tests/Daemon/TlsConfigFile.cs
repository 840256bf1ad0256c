namespace ZramDaemon.Tests.Daemon;

/// <summary>Throwaway certificates (openssl), a zramd.conf with tls-mode = required using them, and the directories
/// libnbd's clients read them from.</summary>
public static class TlsConfigFile
{
    /// <summary>Writes cert.pem and key.pem into <paramref name="dir"/>; returns the text of a zramd.conf using them
    /// (one 16 MiB zram0), for <see cref="RunningDaemon.StartWithConfig(Func{string, string}, IEnumerable{string}?, Dictionary{string, string}?)"/>.</summary>
    public static string Required(string dir)
    {
        WriteCertificate(Path.Combine(dir, "cert.pem"), Path.Combine(dir, "key.pem"));
        return $"[zramd]\ntls-mode = required\ntls-certificate = {dir}/cert.pem\ntls-key = {dir}/key.pem\n[zram0]\nzram-size = 16\n";
    }

    /// <summary>A self-signed certificate for localhost (its name also as a subjectAltName, which libnbd checks over
    /// TCP) at <paramref name="certificate"/>, its new key at <paramref name="key"/>.</summary>
    public static void WriteCertificate(string certificate, string key) =>
        ClientTool.Run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", certificate, "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]).EnsureSuccess();

    /// <summary>
    /// A libnbd tls-certificates directory, <paramref name="dir"/>/client-NAME: <paramref name="trustedServer"/> as
    /// ca-cert.pem (the server certificate the client trusts) and, when <paramref name="clientIssuer"/> names a
    /// directory of <paramref name="dir"/> that TestCertificate.WriteClientAuthority filled, its client certificate and key.
    /// </summary>
    public static string ClientDirectory(string dir, string name, string trustedServer, string? clientIssuer = null)
    {
        string client = Path.Combine(dir, "client-" + name);
        Directory.CreateDirectory(client);
        File.Copy(trustedServer, Path.Combine(client, "ca-cert.pem"));
        foreach (string file in clientIssuer is null ? [] : (string[])["client-cert.pem", "client-key.pem"])
        {
            File.Copy(Path.Combine(dir, clientIssuer!, file), Path.Combine(client, file));
        }

        return client;
    }
}
