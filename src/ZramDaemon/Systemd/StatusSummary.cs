using System.Globalization;
using ZramDaemon.Cli;

namespace ZramDaemon.Systemd;

/// <summary>
/// The one-line STATUS= that systemctl status shows while zramd runs: per device the data stored, its
/// compressed size, the ratio and the clients connected, as zramctl would name them
/// ("zram0: data 4M, compr 1.2M, ratio 3.41, 1 client; zram1: ...").
/// </summary>
public static class StatusSummary
{
    public static string Format(IEnumerable<(string Name, long OrigDataSize, long ComprDataSize, int Clients)> devices)
    {
        ArgumentNullException.ThrowIfNull(devices);
        return string.Join("; ", devices.Select(d =>
            $"{d.Name}: data {StatusTable.HumanSize(d.OrigDataSize)}, compr {StatusTable.HumanSize(d.ComprDataSize)}, "
            + $"ratio {(d.ComprDataSize == 0 ? "0" : ((double)d.OrigDataSize / d.ComprDataSize).ToString("0.00", CultureInfo.InvariantCulture))}, "
            + $"{d.Clients.ToString(CultureInfo.InvariantCulture)} {(d.Clients == 1 ? "client" : "clients")}"));
    }
}
