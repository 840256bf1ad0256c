using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace ZramDaemon.Tests.Daemon;

/// <summary>The real zramd, attached with real NBD clients, inspected and driven with its own verbs.</summary>
public sealed partial class DaemonControlTests
{
    private const int Page = 4096;

    private static long Field(JsonElement device, string name) => device.GetProperty(name).GetInt64();

    /// <summary>256 compressible text pages, 64 pages of one repeated non-zero 8-byte value, 64 random pages.</summary>
    private static byte[] MixedData()
    {
        byte[] data = new byte[384 * Page];
        var text = new StringBuilder();
        for (int i = 0; text.Length < 256 * Page; i++)
        {
            text.Append(CultureInfo.InvariantCulture, $"zramd test line {i}: the quick brown fox jumps over the lazy dog\n");
        }

        Encoding.ASCII.GetBytes(text.ToString(0, 256 * Page)).CopyTo(data, 0);
        for (int offset = 256 * Page; offset < 320 * Page; offset += 8)
        {
            BitConverter.GetBytes(0x0123456789ABCDEFUL).CopyTo(data, offset);
        }

        new Random(42).NextBytes(data.AsSpan(320 * Page, 64 * Page));
        return data;
    }

    [Fact]
    public void Status_json_stats_and_table_report_what_nbdcopy_wrote_and_reads_return_it()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "64M"]);
        string source = Path.Combine(daemon.Directory, "source.bin");
        byte[] data = MixedData();
        File.WriteAllBytes(source, data);
        ClientTool.Run("nbdcopy", [source, daemon.Uri()]).EnsureSuccess();

        JsonElement status = daemon.Status();
        Assert.Equal(64L << 20, Field(status, "disksize"));
        Assert.Equal("lz4", status.GetProperty("algorithm").GetString());
        Assert.Equal(384L * Page, Field(status, "orig_data_size"));
        Assert.Equal(64, Field(status, "same_pages"));
        Assert.Equal(64, Field(status, "huge_pages"));
        long compressed = Field(status, "compr_data_size");
        Assert.InRange(compressed, 64L * Page + 1, 320L * Page - 1); // huge pages count whole; text shrinks
        Assert.True(Field(status, "mem_used_total") > 0);
        foreach (string name in new[] { "mem_limit", "mem_used_max", "pages_compacted", "huge_pages_since", "failed_reads", "failed_writes", "invalid_io", "notify_free" })
        {
            Assert.True(status.TryGetProperty(name, out _), name);
        }

        // Read it all back through another client.
        string copy = Path.Combine(daemon.Directory, "copy.bin");
        ClientTool.Run("nbdcopy", [daemon.Uri(), copy]).EnsureSuccess();
        byte[] back = File.ReadAllBytes(copy);
        Assert.Equal(64L << 20, back.LongLength);
        Assert.True(back.AsSpan(0, data.Length).SequenceEqual(data), "the bytes read back differ from those written");
        Assert.True(back.AsSpan(data.Length).IndexOfAnyExcept((byte)0) < 0, "unwritten space must read as zeros");

        // stats: the kernel's mm_stat and io_stat lines, the same numbers.
        (int code, string stats, _) = daemon.Cli("stats", "zram0");
        Assert.Equal(0, code);
        string[] lines = stats.TrimEnd('\n').Split('\n');
        Assert.Equal(2, lines.Length);
        long[] mm = lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).ToArray();
        Assert.Equal(9, mm.Length);
        Assert.Equal(384L * Page, mm[0]);
        Assert.Equal(compressed, mm[1]);
        Assert.Equal(64, mm[5]);
        Assert.Equal(4, lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries).Length);

        (code, string table, _) = daemon.Cli("status");
        Assert.Equal(0, code);
        string[] row = table.Split('\n')[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["zram0", "lz4", "64M", "1.5M"], row[..4]);

        (code, string raw, _) = daemon.Cli("status", "--raw");
        Assert.Equal(0, code);
        Assert.StartsWith($"zram0 lz4 {64L << 20} {384L * Page} {compressed} ", raw.Split('\n')[1], StringComparison.Ordinal);

        (code, string classes, _) = daemon.Cli("classes", "zram0");
        Assert.Equal(0, code);
        Assert.StartsWith(" class  size", classes, StringComparison.Ordinal);
        Assert.True(classes.Split('\n').Length > 10);

        (code, _, string unknown) = daemon.Cli("stats", "zram9");
        Assert.Equal(1, code);
        Assert.Contains("no device 'zram9'", unknown, StringComparison.Ordinal);
    }

    [Fact]
    public void Idle_and_recompress_verbs_shrink_what_nbdcopy_wrote_and_it_reads_back_the_same()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig("[zram0]\nzram-size = 64M\nrecompress-algorithm = zstd:3\nrecompress-idle-after = 0\n");
        string source = Path.Combine(daemon.Directory, "source.bin");
        byte[] data = MixedData();
        File.WriteAllBytes(source, data);
        ClientTool.Run("nbdcopy", [source, daemon.Uri()]).EnsureSuccess();
        long comprBefore = Field(daemon.Status(), "compr_data_size");

        (int code, string marked, string stderr) = daemon.Cli("idle", "zram0");
        Assert.True(code == 0, stderr);
        Assert.Contains("zram0: 320 pages marked idle", marked, StringComparison.Ordinal); // same-filled pages hold no object

        (code, string some, stderr) = daemon.Cli("recompress", "zram0", "type=idle", "max_pages=10");
        Assert.True(code == 0, stderr);
        // The largest objects first, as the kernel's: 10 of the 64 random pages (raw, 4096 bytes), which zstd cannot shrink.
        Assert.Contains("zram0: recompressed 0 of 10 candidate pages", some, StringComparison.Ordinal);
        Assert.Contains("with zstd:3", some, StringComparison.Ordinal);
        Assert.Equal(0, Field(daemon.Status(), "recompressed_pages"));

        (code, _, stderr) = daemon.Cli("recompress", "zram0");
        Assert.True(code == 0, stderr);
        JsonElement after = daemon.Status();
        long saved = Field(after, "recompress_bytes_saved");
        Assert.True(Field(after, "recompressed_pages") > 10);
        Assert.True(saved > 0);
        Assert.Equal(comprBefore - saved, Field(after, "compr_data_size"));

        string copy = Path.Combine(daemon.Directory, "copy.bin");
        ClientTool.Run("nbdcopy", [daemon.Uri(), copy]).EnsureSuccess();
        Assert.True(File.ReadAllBytes(copy).AsSpan(0, data.Length).SequenceEqual(data), "recompressed pages read back different");

        (code, _, string usage) = daemon.Cli("recompress", "zram0", "type=cold");
        Assert.Equal(64, code);
        Assert.Contains("the type is idle, huge, huge_idle or all", usage, StringComparison.Ordinal);
    }

    [Fact]
    public void A_recompression_dictionary_from_the_config_is_trained_used_and_shown_in_status_and_dedup_counts_shared_pages()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(
            "[zram0]\nzram-size = 64M\nrecompress-algorithm = zstd:6\nrecompress-dictionary = 16K\nrecompress-idle-after = 0\n"
            + "[zram1]\nzram-size = 64M\ndedup = yes\n");
        string source = Path.Combine(daemon.Directory, "source.bin");
        byte[] data = MixedData();
        File.WriteAllBytes(source, data);
        ClientTool.Run("nbdcopy", [source, daemon.Uri()]).EnsureSuccess();
        Assert.Equal(0, Field(daemon.Status(), "recompress_dict_bytes"));

        (int code, _, string stderr) = daemon.Cli("idle", "zram0");
        Assert.True(code == 0, stderr);
        (code, _, stderr) = daemon.Cli("recompress", "zram0");
        Assert.True(code == 0, stderr);
        JsonElement status = daemon.Status();
        Assert.True(Field(status, "recompress_dict_pages") > 0);
        Assert.True(Field(status, "recompress_dict_bytes") > 0);
        Assert.Equal(Field(status, "recompressed_pages"), Field(status, "recompress_dict_pages"));
        string copy = Path.Combine(daemon.Directory, "copy.bin");
        ClientTool.Run("nbdcopy", [daemon.Uri(), copy]).EnsureSuccess();
        Assert.True(File.ReadAllBytes(copy).AsSpan(0, data.Length).SequenceEqual(data), "pages recompressed with the dictionary read back different");

        // zram1 deduplicates: the same file written twice, at 0 and right after it, stores each page once.
        File.WriteAllBytes(source, [.. data, .. data]);
        ClientTool.Run("nbdcopy", [source, daemon.Uri("zram1")]).EnsureSuccess();
        JsonElement dedup = daemon.Status("zram1");
        Assert.True(Field(dedup, "dedup_pages") >= 320, $"dedup_pages {Field(dedup, "dedup_pages")}");
        Assert.True(Field(dedup, "dedup_bytes_saved") > 0);
    }

    [Fact]
    public void Writeback_verb_moves_idle_pages_to_the_backing_file_and_they_read_back_the_same()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(dir => $"[zram0]\nzram-size = 64M\nwriteback-file = {Path.Combine(dir, "zram0.wb")}\n");
        string backing = Path.Combine(daemon.Directory, "zram0.wb");
        string source = Path.Combine(daemon.Directory, "source.bin");
        byte[] data = MixedData();
        File.WriteAllBytes(source, data);
        ClientTool.Run("nbdcopy", [source, daemon.Uri()]).EnsureSuccess();
        Assert.True(File.Exists(backing));

        (int code, _, string stderr) = daemon.Cli("idle", "zram0");
        Assert.True(code == 0, stderr);
        // A run stops after its time limit (5 s) and says so; on a loaded machine it may take more than one.
        long writtenBack = 0;
        string wrote;
        do
        {
            (code, wrote, stderr) = daemon.Cli("writeback", "zram0", "type=idle");
            Assert.True(code == 0, stderr);
            Match run = WroteBack().Match(wrote);
            Assert.True(run.Success && run.Groups[2].Value == backing, wrote);
            writtenBack += long.Parse(run.Groups[1].Value, CultureInfo.InvariantCulture);
        }
        while (wrote.Contains("(stopped after the time limit", StringComparison.Ordinal));

        Assert.Equal(320, writtenBack);

        JsonElement status = daemon.Status();
        Assert.Equal(320, Field(status, "bd_count"));
        Assert.Equal(320, Field(status, "bd_writes"));
        Assert.Equal(0, Field(status, "compr_data_size"));
        Assert.Equal(384L * Page, Field(status, "orig_data_size"));

        string copy = Path.Combine(daemon.Directory, "copy.bin");
        ClientTool.Run("nbdcopy", [daemon.Uri(), copy]).EnsureSuccess();
        Assert.True(File.ReadAllBytes(copy).AsSpan(0, data.Length).SequenceEqual(data), "written-back pages read back different");

        (code, string stats, _) = daemon.Cli("stats", "zram0");
        Assert.Equal(0, code);
        string[] lines = stats.TrimEnd('\n').Split('\n');
        Assert.Equal(3, lines.Length);
        Assert.Equal([320L, 320L, 320L], lines[2].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(long.Parse));
    }

    [Fact]
    public void Compact_lowers_mem_used_total_after_trims()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "64M"]);

        // 8 MiB of pages that compress to many different sizes, then every other page trimmed: half-empty
        // zspages in every class, which only compaction gives back. Small enough that the background compactor's
        // threshold (1024 freeable pages) is not reached, so what falls here is the manual compaction's doing.
        ClientTool.PythonNbd(daemon.Uri(), """
            import random
            h = nbd.NBD(); h.connect_uri(uri)
            rng = random.Random(7)
            for i in range(2048):
                keep = rng.randrange(64, 4000)
                page = bytes(rng.getrandbits(8) for _ in range(keep // 8)) * 8
                page = (page + bytes(4096))[:4096]
                h.pwrite(page, i * 4096)
            for i in range(0, 2048, 2):
                h.trim(4096, i * 4096)
            h.shutdown()
            """).EnsureSuccess();

        JsonElement before = daemon.Status();
        Assert.Equal(1024L * Page, Field(before, "orig_data_size"));
        Assert.Equal(1024, Field(before, "discarded_pages"));

        (int code, string output, string error) = daemon.Cli("compact", "zram0");
        Assert.True(code == 0, error);
        Assert.StartsWith("zram0: compacted, ", output, StringComparison.Ordinal);

        JsonElement after = daemon.Status();
        Assert.True(Field(after, "mem_used_total") < Field(before, "mem_used_total"),
            $"mem_used_total {Field(before, "mem_used_total")} -> {Field(after, "mem_used_total")}");
        Assert.True(Field(after, "pages_compacted") > Field(before, "pages_compacted"));
        Assert.Equal(1024L * Page, Field(after, "orig_data_size"));
        Assert.DoesNotContain("ERR", daemon.Process.StandardError, StringComparison.Ordinal);

        // compact with no name compacts every device.
        (code, output, _) = daemon.Cli("compact");
        Assert.Equal(0, code);
        Assert.StartsWith("zram0: compacted", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Set_changes_the_limit_and_reset_is_refused_while_a_client_is_connected()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "32M", "--mem-limit", "16M"]);
        Assert.Equal(16L << 20, Field(daemon.Status(), "mem_limit"));

        (int code, string output, string error) = daemon.Cli("set", "zram0", "mem_limit=3M");
        Assert.True(code == 0, error);
        Assert.Contains("mem_limit = 3M", output, StringComparison.Ordinal);
        Assert.Equal(3L << 20, Field(daemon.Status(), "mem_limit"));

        // A client that writes, then stays connected until told to go (a line on its stdin).
        string script = """
            h = nbd.NBD(); h.connect_uri(uri)
            h.pwrite(bytes(range(256)) * 16, 0)
            print("written", flush=True)
            sys.stdin.readline()
            h.shutdown()
            """;
        var info = new System.Diagnostics.ProcessStartInfo(ClientTool.Python)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add($"import nbd, sys\nuri = '{daemon.Uri()}'\n{script}");
        using (var client = System.Diagnostics.Process.Start(info)!)
        {
            Assert.Equal("written", client.StandardOutput.ReadLine());
            Assert.Equal(1, Field(daemon.Status(), "connections"));

            (code, _, error) = daemon.Cli("reset", "zram0");
            Assert.Equal(1, code);
            Assert.Contains("zram0 has 1 client(s) connected", error, StringComparison.Ordinal);
            Assert.Equal(Page, Field(daemon.Status(), "orig_data_size"));

            client.StandardInput.WriteLine("go");
            Assert.True(client.WaitForExit(30_000));
            Assert.Equal(0, client.ExitCode);
        }

        // The server notices the disconnect asynchronously.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (Field(daemon.Status(), "connections") != 0 && clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            Thread.Sleep(50);
        }

        (code, output, error) = daemon.Cli("reset", "zram0");
        Assert.True(code == 0, error);
        Assert.Contains("zram0: reset", output, StringComparison.Ordinal);
        Assert.Equal(0, Field(daemon.Status(), "orig_data_size"));
    }

    [Fact]
    public void A_config_file_with_two_devices_serves_both_exports()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig("""
            [zram0]
            zram-size = 16
            compression-algorithm = zstd(level=3)

            [zram1]
            zram-size = min(ram / 1024, 8) * 2
            compression-algorithm = lz4hc
            zram-resident-limit = 4
            read-only = yes
            """);

        ClientTool.Result list = ClientTool.Run("nbdinfo", ["--list", "--json", $"nbd+unix://?socket={daemon.Socket}"]).EnsureSuccess();
        using var exports = JsonDocument.Parse(list.Stdout);
        Dictionary<string, JsonElement> byName = exports.RootElement.GetProperty("exports").EnumerateArray()
            .ToDictionary(e => e.GetProperty("export-name").GetString()!, e => e.Clone());
        Assert.Equal(["zram0", "zram1"], byName.Keys.Order());
        Assert.Equal(16L << 20, byName["zram0"].GetProperty("export-size").GetInt64());
        Assert.False(byName["zram0"].GetProperty("is_read_only").GetBoolean());
        Assert.True(byName["zram1"].GetProperty("is_read_only").GetBoolean());

        double ram = long.Parse(File.ReadLines("/proc/meminfo").First().Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
        long expected = (long)Math.Ceiling(Math.Min(ram / 1024, 8) * 2 * (1 << 20) / Page) * Page;
        JsonElement zram1 = daemon.Status("zram1");
        Assert.Equal(expected, Field(zram1, "disksize"));
        Assert.Equal(4L << 20, Field(zram1, "mem_limit"));
        Assert.Equal("lz4hc:9", zram1.GetProperty("algorithm").GetString());
        Assert.Equal("zstd:3", daemon.Status("zram0").GetProperty("algorithm").GetString());
    }

    [Fact]
    public void Tls_required_in_the_config_file_reaches_the_nbd_server()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(TlsConfigFile.Required);

        ClientTool.Result plain = ClientTool.Run("nbdinfo", ["--size", daemon.Uri()]);
        Assert.NotEqual(0, plain.ExitCode);
        Assert.Contains("requires TLS", plain.Stderr, StringComparison.Ordinal);

        ClientTool.Result tls = ClientTool.Run("nbdinfo", ["--size", $"nbds+unix:///zram0?socket={daemon.Socket}&tls-verify-peer=false"]).EnsureSuccess();
        Assert.Equal((16L << 20).ToString(CultureInfo.InvariantCulture), tls.Stdout.Trim());
    }

    [GeneratedRegex(@"^zram0: wrote (\d+) pages back to (\S+);")]
    private static partial Regex WroteBack();
}
