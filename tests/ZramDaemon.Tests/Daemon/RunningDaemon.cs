using System.Text.Json;

namespace ZramDaemon.Tests.Daemon;

/// <summary>A real zramd serving from a temporary directory: its NBD socket, control socket and output.</summary>
public sealed class RunningDaemon : IDisposable
{
    private RunningDaemon(string dir, ZramdProcess process)
    {
        Directory = dir;
        Process = process;
    }

    public string Directory { get; }

    public ZramdProcess Process { get; }

    public string Socket => Path.Combine(Directory, "zramd.sock");

    public string ControlPath => Path.Combine(Directory, "zramd.ctl");

    public string Uri(string export = "zram0") => $"nbd+unix:///{export}?socket={Socket}";

    /// <summary>Starts zramd with <paramref name="args"/> plus --listen on a socket in a new temporary directory,
    /// and waits for its start line.</summary>
    public static RunningDaemon Start(IEnumerable<string> args, Dictionary<string, string>? environment = null, string? directory = null)
    {
        string dir = directory ?? System.IO.Directory.CreateTempSubdirectory("zramd-e2e-").FullName;
        var env = environment ?? [];
        env.TryAdd("XDG_RUNTIME_DIR", dir);
        ZramdProcess process = ZramdProcess.Start(["--listen", "unix:" + Path.Combine(dir, "zramd.sock"), .. args], env);
        var daemon = new RunningDaemon(dir, process);
        try
        {
            process.WaitForOutput("attach with:", TimeSpan.FromSeconds(60));
        }
        catch
        {
            daemon.Dispose();
            throw;
        }

        return daemon;
    }

    /// <summary>Starts zramd with --config naming a file zramd.conf in a new temporary directory, whose text
    /// <paramref name="config"/> returns given that directory (for the paths of files the configuration names, such
    /// as a writeback-file), plus <paramref name="args"/>.</summary>
    public static RunningDaemon StartWithConfig(Func<string, string> config, IEnumerable<string>? args = null, Dictionary<string, string>? environment = null)
    {
        string dir = System.IO.Directory.CreateTempSubdirectory("zramd-e2e-").FullName;
        string file = Path.Combine(dir, "zramd.conf");
        File.WriteAllText(file, config(dir));
        return Start(["--config", file, .. args ?? []], environment, dir);
    }

    /// <summary><see cref="StartWithConfig(Func{string, string}, IEnumerable{string}?, Dictionary{string, string}?)"/>
    /// for a configuration that names no file of its own.</summary>
    public static RunningDaemon StartWithConfig(string config, IEnumerable<string>? args = null, Dictionary<string, string>? environment = null) =>
        StartWithConfig(_ => config, args, environment);

    /// <summary>Runs a zramd verb against this daemon's control socket.</summary>
    public (int ExitCode, string Stdout, string Stderr) Cli(params string[] args) =>
        ZramdProcess.Run([.. args, "--control", ControlPath]);

    /// <summary><c>zramd status --json</c>, the named device's object.</summary>
    public JsonElement Status(string device = "zram0")
    {
        (int code, string stdout, string stderr) = Cli("status", "--json");
        Assert.True(code == 0, stderr);
        using var document = JsonDocument.Parse(stdout);
        return document.RootElement.GetProperty("devices").EnumerateArray().Single(d => d.GetProperty("name").GetString() == device).Clone();
    }

    public int Stop()
    {
        Process.Terminate();
        return Process.WaitForExit(TimeSpan.FromSeconds(60));
    }

    public void Dispose()
    {
        Process.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
