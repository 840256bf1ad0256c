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
    public void A_huge_mem_limit_is_applied()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "32M", "--mem-limit", "16M"]);

        // 1000000T = 1.1e18 bytes: SizeParser accepts it. DeferredFreeBudget's limit * 10 used to overflow to a
        // negative budget, which the pool's setter threw on after the limit had already been changed: set reported a
        // failure and the limit was 1000000T anyway.
        (int code, _, string error) = daemon.Cli("set", "zram0", "mem_limit=1000000T");
        Assert.True(code == 0, error);
        Assert.Equal(1000000L << 40, Field(daemon.Status(), "mem_limit"));
        Assert.DoesNotContain("ERR", daemon.Process.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public void A_huge_mem_limit_writes_nothing_back_to_the_backing_file()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(dir => $"[zram0]\nzram-size = 64M\nwriteback-file = {Path.Combine(dir, "zram0.wb")}\nwriteback-watermark = 50\n");
        string backing = Path.Combine(daemon.Directory, "zram0.wb");

        // 1 MiB of compressible pages, about 100 KiB in the pool.
        string source = Path.Combine(daemon.Directory, "source.bin");
        byte[] data = new byte[256 * Page];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = (byte)("zramd line " + (i / 64))[i % 10];
        }

        File.WriteAllBytes(source, data);
        ClientTool.Run("nbdcopy", [source, daemon.Uri()]).EnsureSuccess();
        Assert.Equal(0, Field(daemon.Status(), "bd_count"));

        // 300000T = 3.3e17 bytes, ~10^12 times what is stored: far under any watermark. WritebackToWatermark's
        // limit * 50 and limit * 40 used to overflow to negative numbers, so used * 100 < the first was false, and its
        // target used - limit * 40 / 100 larger than used: the background tick (every second) wrote back every page.
        (int code, _, string error) = daemon.Cli("set", "zram0", "mem_limit=300000T");
        Assert.True(code == 0, error);
        Thread.Sleep(3000);

        JsonElement status = daemon.Status();
        Assert.True(Field(status, "bd_count") == 0,
            $"mem_limit 300000T with {Field(status, "mem_used_total")} bytes used wrote {Field(status, "bd_count")} pages back");
    }

    /// <summary>A mem_limit below the device's fixed metadata (32M: a 64 KiB slot table and 16 KiB of pin counters)
    /// is refused with the minimum, and the old limit stays; 0 (none) still works. Found by review: set answered
    /// "zram0: mem_limit = 64K", and every write that was not a same-filled page then failed with ENOSPC.</summary>
    [Fact]
    public void A_mem_limit_below_the_fixed_metadata_is_refused_and_the_old_one_stays()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "32M", "--mem-limit", "16M"]);
        (int code, _, string error) = daemon.Cli("set", "zram0", "mem_limit=64K");
        Assert.NotEqual(0, code);
        Assert.Contains("mem_limit: 64K (65536 bytes) is below zram0's minimum of", error, StringComparison.Ordinal);
        Assert.Equal(16L << 20, Field(daemon.Status(), "mem_limit"));

        // Still writable: an incompressible page is stored.
        string source = Path.Combine(daemon.Directory, "random.bin");
        File.WriteAllBytes(source, System.Security.Cryptography.RandomNumberGenerator.GetBytes(Page));
        ClientTool.Run("nbdcopy", [source, daemon.Uri()]).EnsureSuccess();

        (code, _, error) = daemon.Cli("set", "zram0", "mem_limit=0");
        Assert.True(code == 0, error);
        Assert.Equal(0, Field(daemon.Status(), "mem_limit"));
    }

    [Fact]
    public void A_huge_mem_limit_on_the_command_line_starts_the_daemon()
    {
        string dir = Directory.CreateTempSubdirectory("zramd-e2e-").FullName;
        try
        {
            // The same overflow used to throw in the device's constructor (DeferredFreeBudget): a fatal exception with
            // a stack trace and exit 1, for a limit the configuration had accepted.
            using ZramdProcess process = ZramdProcess.Start(
                ["--size", "16M", "--mem-limit", "1000000T", "--listen", "unix:" + Path.Combine(dir, "z.sock"), "--control", Path.Combine(dir, "z.ctl")],
                new Dictionary<string, string> { ["XDG_RUNTIME_DIR"] = dir });
            process.WaitForOutput("attach with:", TimeSpan.FromSeconds(60));
            process.Terminate();
            Assert.Equal(0, process.WaitForExit(TimeSpan.FromSeconds(60)));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
