namespace ZramDaemon.Tests.Daemon;

/// <summary>A throwaway self-signed certificate (openssl) and a zramd.conf with tls-mode = required using it.</summary>
public static class TlsConfigFile
{
    /// <summary>Writes cert.pem, key.pem and zramd.conf (one 16 MiB zram0) into <paramref name="dir"/>; returns the config path.</summary>
    public static string WriteRequired(string dir)
    {
        ClientTool.Run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", Path.Combine(dir, "key.pem"), "-out", Path.Combine(dir, "cert.pem"), "-days", "2", "-subj", "/CN=localhost"]).EnsureSuccess();
        string config = Path.Combine(dir, "zramd.conf");
        File.WriteAllText(config, $"[zramd]\ntls-mode = required\ntls-certificate = {dir}/cert.pem\ntls-key = {dir}/key.pem\n[zram0]\nzram-size = 16\n");
        return config;
    }
}
