using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace ZramDaemon.Vm.Tests.Harness;

/// <summary>
/// The built zramd (dotnet zramd.dll) as a separate process, serving NBD on a Unix socket in a fresh folder,
/// the way an admin runs it. Disposing stops it with SIGTERM (then SIGKILL) and removes the folder.
/// </summary>
public sealed class ZramdServer : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _log = new();

    private readonly string? _executable;

    private ZramdServer(string directory, Process process, string? executable)
    {
        Directory = directory;
        _process = process;
        _executable = executable;
    }

    public string Directory { get; }

    public string Socket => Path.Combine(Directory, "zramd.sock");

    public string ControlSocket => Path.Combine(Directory, "zramd.ctl");

    /// <summary>What zramd printed so far (both streams), for failure messages.</summary>
    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    /// <param name="executable">a self-contained zramd to run instead of the built zramd.dll.</param>
    public static ZramdServer Start(string size = "1G", string? executable = null)
    {
        string directory = System.IO.Directory.CreateTempSubdirectory("zramd-vm-").FullName;
        var info = new ProcessStartInfo(executable ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (executable is null)
        {
            info.ArgumentList.Add(Repository.ZramdDll);
        }

        foreach (string a in (string[])["--listen", "unix:" + Path.Combine(directory, "zramd.sock"),
                     "--control", Path.Combine(directory, "zramd.ctl"), "--size", size])
        {
            info.ArgumentList.Add(a);
        }

        var process = new Process { StartInfo = info };
        var server = new ZramdServer(directory, process, executable);
        process.OutputDataReceived += (_, e) => server.Append(e.Data);
        process.ErrorDataReceived += (_, e) => server.Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        server.WaitUntilListening(TimeSpan.FromSeconds(30));
        return server;
    }

    /// <summary>Runs a zramd verb against this daemon's control socket (e.g. "status", "--json").</summary>
    public ProcessResult Control(params string[] arguments) => _executable is null
        ? ProcessRunner.Run("dotnet", [Repository.ZramdDll, .. arguments, "--control", ControlSocket], TimeSpan.FromSeconds(60))
        : ProcessRunner.Run(_executable, [.. arguments, "--control", ControlSocket], TimeSpan.FromSeconds(60));

    /// <summary>The counters of <paramref name="device"/> from <c>zramd status --json</c>, by their kernel names
    /// (orig_data_size, compr_data_size, discarded_pages, ...).</summary>
    public Dictionary<string, long> Stats(string device = "zram0")
    {
        ProcessResult result = Control("status", "--json");
        Assert.True(result.ExitCode == 0, "zramd status --json failed: " + result.Describe());
        return ParseStats(result.StandardOutput, device);
    }

    /// <summary>The counters of <paramref name="device"/> in the output of <c>zramd status --json</c>.</summary>
    public static Dictionary<string, long> ParseStats(string statusJson, string device)
    {
        using var json = JsonDocument.Parse(statusJson);
        JsonElement? found = FindDevice(json.RootElement, device);
        Assert.True(found is not null, $"no device {device} in: {statusJson}");
        var counters = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (JsonProperty p in found.Value.EnumerateObject())
        {
            if (p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt64(out long v))
            {
                counters[p.Name] = v;
            }
        }

        return counters;
    }

    private static JsonElement? FindDevice(JsonElement element, string device)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                if (element.TryGetProperty("name", out JsonElement name) && name.ValueKind == JsonValueKind.String
                    && name.GetString() == device)
                {
                    return element;
                }

                foreach (JsonProperty p in element.EnumerateObject())
                {
                    if (FindDevice(p.Value, device) is { } inner)
                    {
                        return inner;
                    }
                }

                return null;
            case JsonValueKind.Array:
                foreach (JsonElement item in element.EnumerateArray())
                {
                    if (FindDevice(item, device) is { } inner)
                    {
                        return inner;
                    }
                }

                return null;
            default:
                return null;
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            ProcessRunner.Run("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)], TimeSpan.FromSeconds(10));
            if (!_process.WaitForExit(TimeSpan.FromSeconds(15)))
            {
                _process.Kill(entireProcessTree: true);
            }
        }

        _process.WaitForExit();
        _process.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // A socket file left behind by a killed daemon is harmless in a temporary folder.
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_log)
        {
            _log.AppendLine(line);
        }
    }

    private void WaitUntilListening(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"zramd exited with {_process.ExitCode} before listening:\n{Log}");
            }

            if (File.Exists(Socket))
            {
                try
                {
                    using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    probe.Connect(new UnixDomainSocketEndPoint(Socket));
                    return;
                }
                catch (SocketException)
                {
                    // Bound but not yet listening.
                }
            }

            Thread.Sleep(50);
        }

        throw new TimeoutException($"zramd did not listen on {Socket} within {timeout.TotalSeconds:F0} s:\n{Log}");
    }
}
