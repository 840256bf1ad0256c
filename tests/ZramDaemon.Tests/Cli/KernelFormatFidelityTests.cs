using System.Globalization;
using System.Text.Json;
using ZramDaemon.Tests.Daemon;

namespace ZramDaemon.Tests.Cli;

/// <summary>
/// What zramd's admin verbs print, against what kernel zram and util-linux zramctl print for the same state
/// (README: "a zramctl-like table", "the mm_stat and io_stat lines, in the kernel's format") and what README says
/// of the control socket.
/// </summary>
public sealed class KernelFormatFidelityTests
{
    /// <summary>util-linux zramctl (sys-utils/zramctl.c, since 2.40) defines COMP-RATIO as "compression ratio:
    /// DATA/TOTAL" and prints <c>xasprintf(&amp;str, "%.4f", orig_data_size / mem_used_total)</c>. zramd's
    /// StatusTable prints orig_data_size / compr_data_size (and a bare "0" when nothing is compressed), so the same
    /// column header means a different, larger number: a script or an admin comparing zramd's COMP-RATIO with
    /// zramctl's on kernel zram is misled (it leaves out allocator fragmentation and metadata).</summary>
    [Fact]
    public void Status_comp_ratio_is_data_over_total_with_four_decimals_as_zramctl_prints_it()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"]);

        // An empty device: zramctl prints 0/TOTAL as "0.0000".
        (int ExitCode, string Stdout, string Stderr) empty = daemon.Cli("status", "--raw");
        Assert.True(empty.ExitCode == 0, empty.Stderr);
        string emptyRatio = RawColumn(empty.Stdout, "COMP-RATIO");

        ClientTool.PythonNbd(daemon.Uri(), """
            h = nbd.NBD(); h.connect_uri(uri)
            for i in range(512):
                page = (b"zramd page %d " % i) * 400
                h.pwrite(page[:4096], i * 4096)
            h.shutdown()
            """).EnsureSuccess();

        JsonElement status = daemon.Status();
        long orig = status.GetProperty("orig_data_size").GetInt64();
        long total = status.GetProperty("mem_used_total").GetInt64();
        (int code, string stdout, string stderr) = daemon.Cli("status", "--raw");
        Assert.True(code == 0, stderr);
        Assert.True(RawColumn(stdout, "TOTAL") == total.ToString(CultureInfo.InvariantCulture), $"mem_used_total moved between the two reads:\n{stdout}");

        string expected = ((double)orig / total).ToString("0.0000", CultureInfo.InvariantCulture);
        string actual = RawColumn(stdout, "COMP-RATIO");
        Assert.True(
            expected == actual && emptyRatio == "0.0000",
            $"COMP-RATIO is {actual}; zramctl prints DATA/TOTAL = {orig}/{total} = {expected} (\"%.4f\") for the same mm_stat:\n{stdout}"
            + $"and on the empty device COMP-RATIO is \"{emptyRatio}\" where zramctl prints \"0.0000\"");
    }

    /// <summary>README: the control socket is mode 0600, so another user's verb is refused with EACCES. zramd then
    /// says "no daemon answers at PATH (Permission denied): is zramd running?" (ZramdCommandLine.Send, the second
    /// SocketException catch), telling the admin the daemon may be down when it is up and the cause is the
    /// socket's owner. The message should name the permission problem (run as root or the socket's owner) and not
    /// suggest that zramd is not running.</summary>
    [Fact]
    public void A_non_owner_is_told_permission_is_denied_not_that_zramd_may_not_be_running()
    {
        if (Environment.UserName != "root")
        {
            return; // needs setpriv to another user
        }

        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"]);
        File.SetUnixFileMode(daemon.Directory, (UnixFileMode)0x1ED); // 0755: nobody reaches the 0600 socket itself
        Assert.Equal((UnixFileMode)0x180, File.GetUnixFileMode(daemon.ControlPath) & (UnixFileMode)0x1FF);

        ClientTool.Result result = ClientTool.Run(
            "setpriv",
            ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "HOME=/tmp", "DOTNET_CLI_HOME=/tmp", "dotnet", ZramdProcess.DllPath,
                "status", "--control", daemon.ControlPath],
            timeoutSeconds: 60);

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("Permission denied", result.Stderr, StringComparison.Ordinal);
        Assert.True(
            !result.Stderr.Contains("is zramd running?", StringComparison.Ordinal),
            $"the daemon is running (pid {daemon.Process.Id}); a non-owner is told it may not be:\n{result.Stderr}");
    }

    /// <summary>ZsClassStats says it formats "the debugfs header line" and each row "the way the kernel's
    /// zs_stats_size_show does" (mm/zsmalloc.c). The kernel's format strings start with a space
    /// (<c>" %5s %5s %9s ..."</c> for the header, <c>" %5u %5u "</c> for a row) and it ends the table with a blank line and a
    /// <c>" Total"</c> row (<c>seq_printf(s, " %5s %5s ", "Total", "")</c>, then the band, object, page and freeable totals).
    /// <c>zramd classes</c> drops the leading space (so its columns sit one to the left of the kernel's: a script cutting
    /// the kernel's columns by position, or diffing the two tables, is off by one) and has no Total row (a script reading
    /// the pool's totals from it finds nothing).</summary>
    [Fact]
    public void Classes_is_laid_out_as_the_kernels_zsmalloc_classes_file_with_its_total_row()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"]);
        ClientTool.PythonNbd(daemon.Uri(), """
            h = nbd.NBD(); h.connect_uri(uri)
            for i in range(64):
                page = ((b"class %d " % i) * 600)[:4096]
                h.pwrite(page, i * 4096)
            h.shutdown()
            """).EnsureSuccess();

        (int code, string stdout, string stderr) = daemon.Cli("classes", "zram0");
        Assert.True(code == 0, stderr);
        string[] lines = stdout.TrimEnd('\n').Split('\n');

        string[] bands = ["10%", "20%", "30%", "40%", "50%", "60%", "70%", "80%", "90%", "99%", "100%"];
        string kernelHeader = string.Create(CultureInfo.InvariantCulture, $" {"class",5} {"size",5} ")
            + string.Concat(bands.Select(b => string.Create(CultureInfo.InvariantCulture, $"{b,9} ")))
            + string.Create(CultureInfo.InvariantCulture, $"{"obj_allocated",13} {"obj_used",10} {"pages_used",10} {"pages_per_zspage",16} {"freeable",8}");
        var problems = new List<string>();
        if (lines[0] != kernelHeader)
        {
            problems.Add($"header is\n[{lines[0]}]\nthe kernel's is\n[{kernelHeader}]");
        }

        if (!lines.Any(l => l.StartsWith(" Total ", StringComparison.Ordinal)))
        {
            problems.Add("no \" Total\" row (the kernel's last line)");
        }

        Assert.True(problems.Count == 0, string.Join("\n", problems) + "\nzramd classes printed:\n" + stdout);
    }

    /// <summary>README: <c>zramd stats NAME</c> prints "the mm_stat and io_stat lines, in the kernel's format";
    /// docs/device.md: "(%8llu fields)". Since Linux 6.4 (zram's invalid_io removal) drivers/block/zram/zram_drv.c
    /// io_stat_show prints <c>"%8llu %8llu 0 %8llu\n"</c>: the third field is a literal, unpadded 0 (this machine's kernel
    /// zram prints "       0        0 0        0"). zramd pads it to eight columns and fills it with its own counter, so
    /// the line is not the kernel's: a script that compares it byte for byte or cuts the fourth field by column
    /// (cut -c19-26 on the kernel's line) reads the wrong thing.</summary>
    [Fact]
    public void Stats_io_stat_line_is_the_kernels_with_its_literal_zero_invalid_io()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"]);

        (int code, string stdout, string stderr) = daemon.Cli("stats", "zram0");
        Assert.True(code == 0, stderr);
        string[] lines = stdout.TrimEnd('\n').Split('\n');
        Assert.True(lines.Length >= 2, stdout);

        string kernel = string.Create(CultureInfo.InvariantCulture, $"{0,8} {0,8} 0 {0,8}");
        string live = File.Exists("/sys/block/zram0/io_stat") ? File.ReadAllText("/sys/block/zram0/io_stat").TrimEnd('\n') : "(no kernel zram0 here)";
        Assert.True(
            lines[1] == kernel,
            $"zramd's io_stat line on a fresh device is\n[{lines[1]}]\nthe kernel's io_stat_show (\"%8llu %8llu 0 %8llu\") prints\n[{kernel}]\n"
            + $"this machine's /sys/block/zram0/io_stat: [{live}]");
    }

    /// <summary>StatusTable.HumanSize says it is "util-linux's size_to_human_string" (zramctl's sizes). That function
    /// (lib/strutils.c) rounds the fraction to one digit and, when the rounding overflows, only increments the integer
    /// part: <c>if (frac == 100) { dec++; frac = 0; }</c>, with no carry into the next unit, so zramctl shows 1 MiB - 1 byte
    /// as "1024K" and 1 GiB - 1 byte as "1024M". HumanSize moves to the next unit ("1M", "1G").</summary>
    [Theory]
    [InlineData((1L << 20) - 1, "1024K")]
    [InlineData((1L << 30) - 1, "1024M")]
    [InlineData((1L << 30) - (1L << 20) / 50, "1024M")]
    public void Status_sizes_round_up_to_1024_of_the_unit_as_size_to_human_string_does(long bytes, string zramctl)
    {
        string zramd = ZramDaemon.Cli.StatusTable.HumanSize(bytes);
        Assert.True(zramd == zramctl, $"{bytes} bytes: zramd prints {zramd}, util-linux's size_to_human_string (zramctl) prints {zramctl}");
    }

    private static string RawColumn(string raw, string header)
    {
        string[] lines = raw.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        int column = Array.IndexOf(lines[0].Split(' '), header);
        Assert.True(column >= 0, $"no {header} column:\n{raw}");
        return lines[1].Split(' ')[column];
    }
}
