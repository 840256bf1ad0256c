using ZramDaemon.Cli;
using ZramDaemon.Control;

namespace ZramDaemon.Tests.Cli;

public class StatusTableTests
{
    [Theory]
    [InlineData(0L, "0B")]
    [InlineData(1000L, "1000B")]
    [InlineData(1024L, "1K")]
    [InlineData(1536L, "1.5K")]
    [InlineData(4L << 30, "4G")]
    [InlineData((4L << 30) - 1, "4G")]
    [InlineData(3_700_000_000L, "3.4G")]
    [InlineData(512L << 20, "512M")]
    public void Sizes_read_like_zramctl(long bytes, string expected) => Assert.Equal(expected, StatusTable.HumanSize(bytes));

    private static DeviceStatus[] Devices() =>
    [
        new DeviceStatus { Name = "zram0", Algorithm = "lz4", DiskSize = 4L << 30, OrigDataSize = 8L << 20, ComprDataSize = 2L << 20, MemUsedTotal = 3L << 20, MemLimit = 0, MemUsedMax = 3L << 20, PagesCompacted = 12 },
        new DeviceStatus { Name = "zram1", Algorithm = "zstd:3", DiskSize = 1L << 30 },
    ];

    [Fact]
    public void The_table_has_zramctl_columns_aligned()
    {
        var output = new StringWriter();
        StatusTable.Write(output, Devices(), json: false, raw: false);
        string[] lines = output.ToString().TrimEnd('\n').Split('\n');
        Assert.Equal(3, lines.Length);
        Assert.Equal(["NAME", "ALGORITHM", "DISKSIZE", "DATA", "COMPR", "TOTAL", "MEM-LIMIT", "MEM-USED", "MIGRATED", "COMP-RATIO"], lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["zram0", "lz4", "4G", "8M", "2M", "3M", "0B", "3M", "12B", "2.6667"], lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["zram1", "zstd:3", "1G", "0B", "0B", "0B", "0B", "0B", "0B", "0.0000"], lines[2].Split(' ', StringSplitOptions.RemoveEmptyEntries));

        // Right-aligned numbers end in the same column.
        Assert.Equal(lines[0].IndexOf("DISKSIZE", StringComparison.Ordinal) + "DISKSIZE".Length, lines[1].IndexOf("4G", StringComparison.Ordinal) + 2);
    }

    [Fact]
    public void Raw_gives_bytes_separated_by_single_spaces()
    {
        var output = new StringWriter();
        StatusTable.Write(output, Devices(), json: false, raw: true);
        string[] lines = output.ToString().TrimEnd('\n').Split('\n');
        Assert.Equal("zram0 lz4 4294967296 8388608 2097152 3145728 0 3145728 12 2.6667", lines[1]);
    }

    [Fact]
    public void Json_carries_every_counter_by_its_kernel_name_and_reads_back()
    {
        DeviceStatus[] devices = Devices();
        devices[0].SamePages = 7;
        devices[0].HugePages = 3;
        devices[0].NotifyFree = 99;
        var output = new StringWriter();
        StatusTable.Write(output, devices, json: true, raw: false);
        string json = output.ToString();
        foreach (string name in new[] { "orig_data_size", "compr_data_size", "mem_used_total", "mem_limit", "mem_used_max", "same_pages", "pages_compacted", "huge_pages", "huge_pages_since", "failed_reads", "failed_writes", "invalid_io", "notify_free" })
        {
            Assert.Contains($"\"{name}\"", json, StringComparison.Ordinal);
        }

        ControlReply reply = ControlReply.Parse(System.Text.Encoding.UTF8.GetString(ControlReply.Status(devices).ToJsonLine()));
        Assert.True(reply.Ok);
        Assert.NotNull(reply.Devices);
        DeviceStatus back = reply.Devices[0];
        foreach ((string name, Func<DeviceStatus, long> get, _) in DeviceStatus.Counters)
        {
            Assert.True(get(devices[0]) == get(back), name);
        }

        Assert.Equal(7, back.SamePages);
        Assert.Equal("zstd:3", reply.Devices[1].Algorithm);
    }
}
