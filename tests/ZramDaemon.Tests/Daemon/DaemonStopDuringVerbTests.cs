using System.Diagnostics;
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
        using RunningDaemon daemon = StartFilled();

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

    /// <summary>
    /// A stop cuts a running recompress short, and the verbs queued behind it (one run at a time per device) give up
    /// their turn: each used to run in full (up to 5 s) after SIGTERM, one after the other, so that a few verbs sent
    /// together held the stop for tens of seconds (256 control connections may be in service) and systemd's stop
    /// timeout could end in SIGKILL. Every client still gets its reply, saying the run was stopped.
    /// </summary>
    [Fact]
    public void Sigterm_stops_a_running_recompress_and_those_queued_behind_it_at_once()
    {
        using RunningDaemon daemon = StartFilled();

        var verbs = new List<ZramdProcess>();
        try
        {
            for (int i = 0; i < 3; i++)
            {
                verbs.Add(ZramdProcess.Start(["recompress", "zram0", "--control", daemon.ControlPath]));
            }

            // All three have reached the daemon (one verb process may start seconds after another on a loaded machine).
            daemon.Process.WaitForOutput("control: recompress zram0", TimeSpan.FromSeconds(30), times: 3);
            Thread.Sleep(500);
            Assert.All(verbs, v => Assert.False(v.HasExited, "a recompress verb ended before SIGTERM: the data recompresses too fast for this test"));

            // Before the fix: the running verb's 4 s left, then 5 s for each queued one. After it: the next slot.
            var clock = Stopwatch.StartNew();
            Assert.Equal(0, daemon.Stop());
            TimeSpan stop = clock.Elapsed;
            foreach (ZramdProcess verb in verbs)
            {
                Assert.True(verb.WaitForExit(TimeSpan.FromSeconds(60)) == 0, "recompress during the stop: " + verb.StandardOutput + verb.StandardError);
                Assert.Contains("(stopped: zramd is stopping)", verb.StandardOutput, StringComparison.Ordinal);
            }

            // Before the fix at least 10 s (what the running one had left, then 5 s for each queued one); 7 s leaves
            // room for a loaded machine's process start and stop.
            Assert.True(stop < TimeSpan.FromSeconds(7), $"the stop took {stop.TotalSeconds:F1} s: the recompress verbs ran on after SIGTERM\n{daemon.Process.StandardError}");
        }
        finally
        {
            verbs.ForEach(v => v.Dispose());
        }
    }

    /// <summary>
    /// A daemon whose zram0 holds 256 MiB of base64 text: lz4 stores it nearly as is, zstd:19 shrinks it, slowly,
    /// so that a recompress verb runs into its 5-second limit and SIGTERM a second in lands in the middle of it.
    /// </summary>
    private static RunningDaemon StartFilled()
    {
        RunningDaemon daemon = RunningDaemon.StartWithConfig("[zram0]\nzram-size = 512\nrecompress-algorithm = zstd:19\nrecompress-idle-after = 0\n",
            environment: new Dictionary<string, string> { ["ZRAMD_LOG_LEVEL"] = "debug" });
        try
        {
            string source = Path.Combine(daemon.Directory, "source.bin");
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
            return daemon;
        }
        catch
        {
            daemon.Dispose();
            throw;
        }
    }
}
