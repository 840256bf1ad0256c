using System.Text.Json;

namespace ZramDaemon.Tests.Daemon;

/// <summary>
/// <c>zramd set NAME mem_limit=SIZE</c> with the largest sizes the parser accepts (memparse takes them too, and the
/// kernel's mem_limit_store keeps them as a page count): the limit arithmetic (limit * percent) must not overflow.
/// </summary>
public sealed class DaemonSetLimitTests
{
    private const int Page = 4096;

    private static long Field(JsonElement device, string name) => device.GetProperty(name).GetInt64();

    [Fact]
    public void A_huge_mem_limit_is_either_applied_or_refused_with_nothing_changed()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "32M", "--mem-limit", "16M"]);

        // 1000000T = 1.1e18 bytes: SizeParser accepts it; DeferredFreeBudget's limit * 10 overflows to a negative
        // budget, which the pool's setter throws on after _memLimit was already exchanged.
        (int code, string output, string error) = daemon.Cli("set", "zram0", "mem_limit=1000000T");
        long limit = Field(daemon.Status(), "mem_limit");
        if (code == 0)
        {
            Assert.Equal(1000000L << 40, limit);
        }
        else
        {
            Assert.True(limit == 16L << 20, $"set failed ({error.Trim()}) but mem_limit changed: 16M -> {limit}");
        }

        Assert.DoesNotContain("ERR", daemon.Process.StandardError, StringComparison.Ordinal);
        _ = output;
    }

    [Fact]
    public void A_huge_mem_limit_writes_nothing_back_to_the_backing_file()
    {
        string dir = Directory.CreateTempSubdirectory("zramd-e2e-").FullName;
        string config = Path.Combine(dir, "zramd.conf");
        string backing = Path.Combine(dir, "zram0.wb");
        File.WriteAllText(config, $"[zram0]\nzram-size = 64M\nwriteback-file = {backing}\nwriteback-watermark = 50\n");
        using RunningDaemon daemon = RunningDaemon.Start(["--config", config], directory: dir);

        // 1 MiB of compressible pages, about 100 KiB in the pool.
        string source = Path.Combine(dir, "source.bin");
        byte[] data = new byte[256 * Page];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = (byte)("zramd line " + (i / 64))[i % 10];
        }

        File.WriteAllBytes(source, data);
        ClientTool.Run("nbdcopy", [source, daemon.Uri()]).EnsureSuccess();
        Assert.Equal(0, Field(daemon.Status(), "bd_count"));

        // 300000T = 3.3e17 bytes, ~10^12 times what is stored: far under any watermark. WritebackToWatermark's
        // limit * 50 and limit * 40 overflow to negative numbers, so used * 100 < the first is false, and its target
        // used - limit * 40 / 100 is larger than used: the background tick (every second) writes back every page.
        (int code, _, string error) = daemon.Cli("set", "zram0", "mem_limit=300000T");
        Assert.True(code == 0, error);
        Thread.Sleep(3000);

        JsonElement status = daemon.Status();
        Assert.True(Field(status, "bd_count") == 0,
            $"mem_limit 300000T with {Field(status, "mem_used_total")} bytes used wrote {Field(status, "bd_count")} pages back");
    }

    [Fact]
    public void A_huge_mem_limit_on_the_command_line_starts_the_daemon_or_is_a_configuration_error()
    {
        string dir = Directory.CreateTempSubdirectory("zramd-e2e-").FullName;
        try
        {
            // The same overflow in the device's constructor (DeferredFreeBudget): a fatal exception with a stack
            // trace and exit 1, where the README promises exit 78 and one line for a bad setting.
            using ZramdProcess process = ZramdProcess.Start(
                ["--size", "16M", "--mem-limit", "1000000T", "--listen", "unix:" + Path.Combine(dir, "z.sock"), "--control", Path.Combine(dir, "z.ctl")],
                new Dictionary<string, string> { ["XDG_RUNTIME_DIR"] = dir });
            try
            {
                process.WaitForOutput("attach with:", TimeSpan.FromSeconds(60));
                process.Terminate(); // It started: the limit was taken.
                process.WaitForExit(TimeSpan.FromSeconds(60));
            }
            catch (InvalidOperationException)
            {
                // It refused: that must be a configuration error, exit 78, not an exception.
                int code = process.WaitForExit(TimeSpan.FromSeconds(10));
                string stderr = process.StandardError;
                Assert.True(code == 78, $"exit {code}: {stderr.Split('\n').FirstOrDefault(l => l.Contains("FTL", StringComparison.Ordinal))}");
                Assert.DoesNotContain("ArgumentOutOfRangeException", stderr, StringComparison.Ordinal);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
