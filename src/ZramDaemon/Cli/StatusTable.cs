using System.Globalization;
using System.Text.Json;
using ZramDaemon.Control;

namespace ZramDaemon.Cli;

/// <summary>
/// <c>zramd status</c>: the table util-linux zramctl prints (NAME ALGORITHM DISKSIZE DATA COMPR TOTAL MEM-LIMIT
/// MEM-USED MIGRATED COMP-RATIO) with zramctl's human sizes; --raw gives bytes separated by single spaces;
/// --json gives every counter by its kernel name.
/// </summary>
public static class StatusTable
{
    private static readonly string[] Headers =
        ["NAME", "ALGORITHM", "DISKSIZE", "DATA", "COMPR", "TOTAL", "MEM-LIMIT", "MEM-USED", "MIGRATED", "COMP-RATIO"];

    public static void Write(TextWriter output, IReadOnlyList<DeviceStatus> devices, bool json, bool raw)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(devices);
        if (json)
        {
            using var stream = new MemoryStream();
            using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
            {
                writer.WriteStartObject();
                writer.WritePropertyName("devices");
                ControlReply.WriteDevices(writer, devices);
                writer.WriteEndObject();
            }

            output.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
            return;
        }

        var rows = new List<string[]> { Headers };
        foreach (DeviceStatus d in devices)
        {
            Func<long, string> size = raw ? b => b.ToString(CultureInfo.InvariantCulture) : HumanSize;
            rows.Add(
            [
                d.Name,
                d.Algorithm,
                size(d.DiskSize),
                size(d.OrigDataSize),
                size(d.ComprDataSize),
                size(d.MemUsedTotal),
                size(d.MemLimit),
                size(d.MemUsedMax),
                // A count of pages, which zramctl formats as a size all the same (get_mm_stat: "12B"); so does zramd.
                size(d.PagesCompacted),
                // zramctl's COMP-RATIO is DATA/TOTAL ("%.4f"), fragmentation and metadata counted; TOTAL is never 0 here (the
                // slot table counts from the start), where zramctl would print nan.
                (d.MemUsedTotal == 0 ? 0 : (double)d.OrigDataSize / d.MemUsedTotal).ToString("0.0000", CultureInfo.InvariantCulture),
            ]);
        }

        if (raw)
        {
            foreach (string[] row in rows)
            {
                output.WriteLine(string.Join(' ', row));
            }

            return;
        }

        // zramctl aligns names and text left, numbers right.
        int[] widths = Enumerable.Range(0, Headers.Length).Select(c => rows.Max(r => r[c].Length)).ToArray();
        foreach (string[] row in rows)
        {
            var line = new System.Text.StringBuilder();
            for (int c = 0; c < row.Length; c++)
            {
                if (c > 0)
                {
                    line.Append(' ');
                }

                line.Append(c < 2 ? row[c].PadRight(widths[c]) : row[c].PadLeft(widths[c]));
            }

            output.WriteLine(line.ToString().TrimEnd());
        }
    }

    /// <summary>util-linux's size_to_human_string: powers of 1024, one decimal when it is not zero, a
    /// single-letter unit ("0B", "512B", "1.5K", "4G", "1024K").</summary>
    public static string HumanSize(long bytes)
    {
        if (bytes < 1024)
        {
            return bytes.ToString(CultureInfo.InvariantCulture) + "B";
        }

        const string Units = "KMGTPE";
        int unit = -1;
        double value = bytes;
        while (value >= 1024 && unit < Units.Length - 1)
        {
            value /= 1024;
            unit++;
        }

        // Rounding up to 1024 stays in the unit ("1024K" for 1 MiB - 1 byte), as size_to_human_string's
        // "if (frac == 100) { dec++; frac = 0; }" does.
        double rounded = Math.Round(value, 1, MidpointRounding.AwayFromZero);

        string number = rounded % 1 == 0
            ? rounded.ToString("0", CultureInfo.InvariantCulture)
            : rounded.ToString("0.0", CultureInfo.InvariantCulture);
        return number + Units[unit];
    }
}
