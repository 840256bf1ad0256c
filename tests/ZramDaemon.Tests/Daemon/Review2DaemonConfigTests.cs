namespace ZramDaemon.Tests.Daemon;

/// <summary>Review 2: the daemon's own files as a writeback-file, from the real daemon.</summary>
public sealed class Review2DaemonConfigTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-review2-conf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// ConfigurationLoader.Build (src/ZramDaemon/Configuration/ConfigurationLoader.cs, the ownFiles check) now refuses a
    /// writeback-file that is the configuration file, the control socket or an NBD socket, but not the TLS certificate or
    /// key the same configuration names. The loader reads both first (the certificate is loaded in Build), then the
    /// device's BackingFile opens the key file, cuts it to 0 and sizes it to the device, zramd serves with TLS from what
    /// it loaded, and at stop deletes the file: the key (or certificate) is gone and the next start fails. Wrong: the
    /// daemon destroys a file it was told to read. Right: a configuration error (exit 78) naming writeback-file, and the
    /// file left as it is, as for the configuration file.
    /// </summary>
    [Theory]
    [InlineData("key.pem")]
    [InlineData("cert.pem")]
    public void A_writeback_file_that_is_the_tls_key_or_certificate_is_refused_and_the_file_kept(string which)
    {
        string config = TlsConfigFile.Required(_dir) + $"writeback-file = {Path.Combine(_dir, which)}\n";
        string target = Path.Combine(_dir, which);
        byte[] before = File.ReadAllBytes(target);
        string file = Path.Combine(_dir, "zramd.conf");
        File.WriteAllText(file, config);
        using ZramdProcess process = ReviewDaemonConfigErrorTests.StartAndStop(_dir, file, out int code);
        Assert.True(File.Exists(target) && File.ReadAllBytes(target).AsSpan().SequenceEqual(before),
            $"{which} was {(File.Exists(target) ? $"changed ({new FileInfo(target).Length} bytes)" : "deleted")}; exit {code}; stderr:\n{process.StandardError}");
        Assert.Equal(78, code);
        Assert.Contains("writeback-file", process.StandardError, StringComparison.Ordinal);
    }
}
