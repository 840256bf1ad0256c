namespace ZramDaemon.Tests.Daemon;

/// <summary>A throwaway self-signed certificate (openssl) and a zramd.conf with tls-mode = required using it.</summary>
public static class TlsConfigFile
{
    /// <summary>Writes cert.pem and key.pem into <paramref name="dir"/>; returns the text of a zramd.conf using them
    /// (one 16 MiB zram0), for <see cref="RunningDaemon.StartWithConfig(Func{string, string}, IEnumerable{string}?, Dictionary{string, string}?)"/>.</summary>
    public static string Required(string dir)
    {
        ClientTool.Run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", Path.Combine(dir, "key.pem"), "-out", Path.Combine(dir, "cert.pem"), "-days", "2", "-subj", "/CN=localhost"]).EnsureSuccess();
        return $"[zramd]\ntls-mode = required\ntls-certificate = {dir}/cert.pem\ntls-key = {dir}/key.pem\n[zram0]\nzram-size = 16\n";
    }
}
