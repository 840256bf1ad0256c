using System.Text.Json;

namespace ZramDaemon.Tests.Daemon;

/// <summary>
/// <c>zramd set NAME KEY=VALUE</c> for the settings besides mem_limit (DaemonControlTests and DaemonSetLimitTests
/// have that one): the kernel's <c>echo 0 &gt; mem_used_max</c>, and the writeback limit of a running device.
/// </summary>
public sealed class DaemonSetTests
{
    private const int Page = 4096;

    private static long Field(JsonElement device, string name) => device.GetProperty(name).GetInt64();

    /// <summary>Pages of which no two are alike and each compresses to about 1 KiB, so each takes pool space.</summary>
    private const string WritePages = """
        import random
        h = nbd.NBD(); h.connect_uri(uri)
        rng = random.Random(11)
        for i in range(count):
            page = bytes(rng.getrandbits(8) for _ in range(128)) * 8
            h.pwrite(page + bytes(4096 - len(page)), i * 4096)
        h.shutdown()
        """;

    /// <summary>Reads back the first <c>count</c> pages <see cref="WritePages"/> writes, each as it wrote it.</summary>
    private const string ReadPages = """
        import random
        h = nbd.NBD(); h.connect_uri(uri)
        rng = random.Random(11)
        for i in range(count):
            page = bytes(rng.getrandbits(8) for _ in range(128)) * 8
            assert h.pread(4096, i * 4096) == page + bytes(4096 - len(page)), i
        h.shutdown()
        """;

    [Fact]
    public void Mem_used_max_0_restarts_the_peak_from_the_current_usage()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "32M"]);
        ClientTool.PythonNbd(daemon.Uri(), "count = 2048\n" + WritePages).EnsureSuccess();
        ClientTool.PythonNbd(daemon.Uri(), "h = nbd.NBD(); h.connect_uri(uri)\nh.trim(2048 * 4096, 0)\nh.shutdown()").EnsureSuccess();
        (int code, _, string error) = daemon.Cli("compact", "zram0");
        Assert.True(code == 0, error);

        JsonElement before = daemon.Status();
        Assert.True(Field(before, "mem_used_max") > 2 * Field(before, "mem_used_total"),
            $"the peak {Field(before, "mem_used_max")} should be far above the usage {Field(before, "mem_used_total")} after trimming all");

        (code, string output, error) = daemon.Cli("set", "zram0", "mem_used_max=0");
        Assert.True(code == 0, error);
        Assert.Contains("zram0: mem_used_max = ", output, StringComparison.Ordinal);

        JsonElement after = daemon.Status();
        Assert.True(Field(after, "mem_used_max") >= Field(after, "mem_used_total"), "the peak fell below the usage");
        Assert.True(Field(after, "mem_used_max") <= Field(before, "mem_used_total") + (16 * Page),
            $"mem_used_max {Field(after, "mem_used_max")} after the reset, usage {Field(before, "mem_used_total")}");
    }

    [Fact]
    public void Writeback_limit_set_at_run_time_bounds_what_the_next_writeback_writes()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(dir => $"[zram0]\nzram-size = 16M\nwriteback-file = {Path.Combine(dir, "zram0.wb")}\n");
        ClientTool.PythonNbd(daemon.Uri(), "count = 64\n" + WritePages).EnsureSuccess();

        // 10 pages' worth a day, then a writeback of everything: it stops at the limit.
        (int code, string output, string error) = daemon.Cli("set", "zram0", "writeback_limit=40K");
        Assert.True(code == 0, error);
        Assert.Contains("zram0: writeback_limit = ", output, StringComparison.Ordinal);
        // A failure, as the kernel's write returns EIO at the limit; what was written is said and stays.
        (code, output, error) = daemon.Cli("writeback", "zram0", "type=all");
        Assert.True(code == 1, $"exit {code}: {output}");
        Assert.Contains("zram0: wrote 10 pages back", error, StringComparison.Ordinal);
        Assert.Contains("daily writeback_limit is used up", error, StringComparison.Ordinal);
        JsonElement status = daemon.Status();
        Assert.Equal(10, Field(status, "bd_count"));
        Assert.Equal(40 << 10, Field(status, "writeback_limit"));
        Assert.Equal(40 << 10, Field(status, "writeback_today"));

        // Lowered under what today wrote: nothing more. Lifted: the rest.
        (code, _, error) = daemon.Cli("set", "zram0", "writeback_limit=4K");
        Assert.True(code == 0, error);
        (code, _, error) = daemon.Cli("writeback", "zram0", "type=all");
        Assert.True(code == 1, error);
        Assert.Contains("zram0: wrote 0 pages back", error, StringComparison.Ordinal);
        Assert.Equal(10, Field(daemon.Status(), "bd_count"));

        (code, _, error) = daemon.Cli("set", "zram0", "writeback_limit=0");
        Assert.True(code == 0, error);
        (code, output, error) = daemon.Cli("writeback", "zram0", "type=all");
        Assert.True(code == 0, error);
        Assert.Contains("zram0: wrote 54 pages back", output, StringComparison.Ordinal);
        Assert.DoesNotContain("stopped", output, StringComparison.Ordinal);
        status = daemon.Status();
        Assert.Equal(64, Field(status, "bd_count"));
        Assert.Equal(0, Field(status, "writeback_limit"));
        Assert.Equal(64 * Page, Field(status, "writeback_today"));

        // Every page still reads back as written.
        ClientTool.PythonNbd(daemon.Uri(), "count = 64\n" + ReadPages).EnsureSuccess();
    }

    [Fact]
    public void Comp_algorithm_changes_what_new_writes_use_and_every_page_still_reads()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"]);
        ClientTool.PythonNbd(daemon.Uri(), "count = 256\n" + WritePages).EnsureSuccess();
        long lz4 = Field(daemon.Status(), "compr_data_size");

        (int code, string output, string error) = daemon.Cli("set", "zram0", "comp_algorithm=zstd:9");
        Assert.True(code == 0, error);
        Assert.Contains("zram0: comp_algorithm = zstd:9", output, StringComparison.Ordinal);
        Assert.Equal("zstd:9", daemon.Status().GetProperty("algorithm").GetString());
        ClientTool.PythonNbd(daemon.Uri(), """
            h = nbd.NBD(); h.set_full_info(True); h.connect_uri(uri)
            assert h.get_export_description() == "zramd zram0: 16M, zstd:9", h.get_export_description()
            h.shutdown()
            """).EnsureSuccess();

        // The same pages written again: zstd stores them in less than LZ4 did, and all of them read back.
        ClientTool.PythonNbd(daemon.Uri(), "count = 256\n" + WritePages).EnsureSuccess();
        long zstd = Field(daemon.Status(), "compr_data_size");
        Assert.True(zstd < lz4, $"compr_data_size {zstd} with zstd:9, {lz4} with lz4");
        (code, _, error) = daemon.Cli("set", "zram0", "comp_algorithm=lz4");
        Assert.True(code == 0, error);

        // A device keeps a compressor for each setting it used: past a few, a new one is refused in one line.
        Assert.True(daemon.Cli("set", "zram0", "comp_algorithm=lz4hc").Item1 == 0);
        Assert.True(daemon.Cli("set", "zram0", "comp_algorithm=zstd(level=3)").Item1 == 0); // zram-generator's spelling, as the config file takes it
        (code, _, error) = daemon.Cli("set", "zram0", "comp_algorithm=lz4:5");
        Assert.Equal(1, code);
        Assert.StartsWith("zramd: comp_algorithm: zram0 has used 4 algorithm settings (lz4, zstd:9, lz4hc:9, zstd:3), the most it keeps", error, StringComparison.Ordinal);
        Assert.Equal("zstd:3", daemon.Status().GetProperty("algorithm").GetString());
        (code, _, error) = daemon.Cli("set", "zram0", "comp_algorithm=lz4");
        Assert.True(code == 0, error);
        ClientTool.PythonNbd(daemon.Uri(), "count = 128\n" + WritePages).EnsureSuccess();
        ClientTool.PythonNbd(daemon.Uri(), "count = 256\n" + ReadPages).EnsureSuccess();
    }
}
