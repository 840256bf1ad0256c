using System.Buffers;
using System.Text.Json;

namespace ZramDaemon.Control;

/// <summary>
/// The answer to a <see cref="ControlRequest"/>: one line of JSON, <c>{"ok":true,"text":"...","devices":[...]}</c>
/// or <c>{"ok":false,"error":"..."}</c>. status fills devices (every counter by its kernel name); the other
/// verbs answer with text meant for a person.
/// </summary>
public sealed record ControlReply(bool Ok, string? Text, string? Error, IReadOnlyList<DeviceStatus>? Devices)
{
    public static ControlReply Success(string text) => new(true, text, null, null);

    public static ControlReply Failure(string error) => new(false, null, error, null);

    public static ControlReply Status(IReadOnlyList<DeviceStatus> devices) => new(true, null, null, devices);

    public byte[] ToJsonLine()
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteBoolean("ok", Ok);
            if (Text is not null)
            {
                writer.WriteString("text", Text);
            }

            if (Error is not null)
            {
                writer.WriteString("error", Error);
            }

            if (Devices is not null)
            {
                writer.WritePropertyName("devices");
                WriteDevices(writer, Devices);
            }

            writer.WriteEndObject();
        }

        buffer.Write("\n"u8);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>The devices array as <c>zramd status --json</c> prints it.</summary>
    public static void WriteDevices(Utf8JsonWriter writer, IReadOnlyList<DeviceStatus> devices)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(devices);
        writer.WriteStartArray();
        foreach (DeviceStatus device in devices)
        {
            writer.WriteStartObject();
            writer.WriteString("name", device.Name);
            writer.WriteString("algorithm", device.Algorithm);
            writer.WriteBoolean("read_only", device.ReadOnly);
            foreach ((string name, Func<DeviceStatus, long> get, _) in DeviceStatus.Counters)
            {
                writer.WriteNumber(name, get(device));
            }

            writer.WriteEndObject();
        }

        writer.WriteEndArray();
    }

    public static ControlReply Parse(string json)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            JsonElement root = document.RootElement;
            bool ok = root.GetProperty("ok").GetBoolean();
            string? text = root.TryGetProperty("text", out JsonElement t) ? t.GetString() : null;
            string? error = root.TryGetProperty("error", out JsonElement e) ? e.GetString() : null;
            List<DeviceStatus>? devices = null;
            if (root.TryGetProperty("devices", out JsonElement array))
            {
                devices = [];
                foreach (JsonElement item in array.EnumerateArray())
                {
                    var status = new DeviceStatus
                    {
                        Name = item.GetProperty("name").GetString() ?? string.Empty,
                        Algorithm = item.GetProperty("algorithm").GetString() ?? string.Empty,
                        ReadOnly = item.GetProperty("read_only").GetBoolean(),
                    };
                    foreach ((string name, _, Action<DeviceStatus, long> set) in DeviceStatus.Counters)
                    {
                        if (item.TryGetProperty(name, out JsonElement value))
                        {
                            set(status, value.GetInt64());
                        }
                    }

                    devices.Add(status);
                }
            }

            return new ControlReply(ok, text, error, devices);
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return Failure($"the daemon's reply is not understood ({ex.Message}): {Truncate(json)}");
        }
    }

    private static string Truncate(string s) => s.Length <= 200 ? s : s[..200] + "...";
}
