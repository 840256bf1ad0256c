using System.Text;

namespace ZramDaemon.Tests.Daemon;

/// <summary>SIGTERM while a control verb is running against a device.</summary>
public sealed class DaemonStopDuringVerbTests
{
    /// <summary>
    /// ZramdService.StopAsync disposes the control server (ControlServer.DisposeAsync waits for the accept loop only,
    /// not for the requests it handed to the thread pool) and then frees every device (ZramDevice.Dispose: pool,
    /// compressors' native zstd contexts, backing file). A recompress (up to 5 s), writeback or reset still running
    /// keeps using that device: it hits ObjectDisposedException at best, and at worst a ZSTD_compressCCtx on a context
    /// Compressor.Dispose has just freed (the streams are freed without taking their locks), a use-after-free of native
    /// memory. Expected: the verb ends before the devices are freed, and its client gets the reply.
    /// </summary>
    [Fact]
    public void Sigterm_while_recompress_runs_frees_the_device_only_after_the_verb_has_ended()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig("[zram0]\nzram-size = 512\nrecompress-algorithm = zstd:19\nrecompress-idle-after = 0\n",
            environment: new Dictionary<string, string> { ["ZRAMD_LOG_LEVEL"] = "debug" });
        string dir = daemon.Directory;

        // 256 MiB of base64 text: lz4 stores it nearly as is, zstd:19 shrinks it, slowly: the verb runs into its
        // 5-second limit, so SIGTERM a second in lands in the middle of it.
        string source = Path.Combine(dir, "source.bin");
        var random = new Random(7);
        byte[] raw = new byte[3 << 20];
        using (FileStream file = File.Create(source))
        {
            for (int i = 0; i < 64; i++)
            {
                random.NextBytes(raw);
                file.Write(Encoding.ASCII.GetBytes(Convert.ToBase64String(raw)));
            }
        }

        ClientTool.Run("nbdcopy", [source, daemon.Uri()]).EnsureSuccess();

        using ZramdProcess verb = ZramdProcess.Start(["recompress", "zram0", "--control", daemon.ControlPath]);
        daemon.Process.WaitForOutput("control: recompress zram0", TimeSpan.FromSeconds(30));
        Thread.Sleep(1000);
        Assert.False(verb.HasExited, "the recompress verb ended before SIGTERM: the data recompresses too fast for this test");

        Assert.Equal(0, daemon.Stop());
        // The verb's work was done, so its client gets the reply, stop or not.
        Assert.True(verb.WaitForExit(TimeSpan.FromSeconds(60)) == 0, "recompress during the stop: " + verb.StandardOutput + verb.StandardError);

        string log = daemon.Process.StandardError;
        Assert.DoesNotContain("ObjectDisposedException", log, StringComparison.Ordinal);
        int released = log.IndexOf("zram0: released", StringComparison.Ordinal);
        int finished = log.IndexOf("zram0: recompression (all) stored", StringComparison.Ordinal);
        Assert.True(released >= 0, log);
        Assert.True(finished >= 0 && finished < released, "the device was freed while the recompress verb was still running on it:\n" + log);
    }
}
