using ZramDaemon.Systemd;

namespace ZramDaemon.Tests.Systemd;

public sealed class StatusSummaryTests
{
    [Fact]
    public void One_line_per_daemon_with_each_devices_data_compressed_size_ratio_and_clients()
    {
        string line = StatusSummary.Format(
        [
            ("zram0", 3L << 20, 1L << 20, 1),
            ("zram1", 0, 0, 2),
        ]);
        Assert.Equal("zram0: data 3M, compr 1M, ratio 3.00, 1 client; zram1: data 0B, compr 0B, ratio 0, 2 clients", line);
    }
}
