using System.Diagnostics;
using System.Text;

namespace ZramDaemon.Tests.Daemon;

/// <summary>
/// The real zramd, started as its own process (<c>dotnet zramd.dll</c>, copied next to the tests by the
/// project reference), with captured output. The environment starts clean of ZRAMD_*, NOTIFY_SOCKET and
/// JOURNAL_STREAM, and SIGHUP at its default action, so that the machine running the tests cannot change what they see.
/// </summary>
public sealed class ZramdProcess : IDisposable
{
    private static readonly string[] InheritedVariablesToDrop =
        ["NOTIFY_SOCKET", "JOURNAL_STREAM", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "RUNTIME_DIRECTORY"];

    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly Lock _lock = new();

    private ZramdProcess(Process process)
    {
        _process = process;
        _process.OutputDataReceived += (_, e) => Append(_stdout, e.Data);
        _process.ErrorDataReceived += (_, e) => Append(_stderr, e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public static string DllPath { get; } = Path.Combine(AppContext.BaseDirectory, "zramd.dll");

    public int Id => _process.Id;

    public string StandardOutput
    {
        get
        {
            lock (_lock)
            {
                return _stdout.ToString();
            }
        }
    }

    public string StandardError
    {
        get
        {
            lock (_lock)
            {
                return _stderr.ToString();
            }
        }
    }

    public bool HasExited => _process.HasExited;

    /// <param name="hangupIgnored">Start zramd with SIGHUP ignored, as nohup does; otherwise at its default action.</param>
    public static ZramdProcess Start(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null, bool hangupIgnored = false)
    {
        // Through env(1), which execs dotnet in the same process, to give zramd SIGHUP at its default action as systemd
        // gives a service (whatever the suite was started under), or ignored when the test asks for it.
        var info = new ProcessStartInfo("env")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(hangupIgnored ? "--ignore-signal=HUP" : "--default-signal=HUP");
        info.ArgumentList.Add("dotnet");
        info.ArgumentList.Add(DllPath);
        foreach (string arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        foreach (string name in info.Environment.Keys.Where(k => k.StartsWith("ZRAMD_", StringComparison.Ordinal) || InheritedVariablesToDrop.Contains(k)).ToList())
        {
            info.Environment.Remove(name);
        }

        foreach ((string name, string value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }

        return new ZramdProcess(Process.Start(info) ?? throw new InvalidOperationException("dotnet did not start"));
    }

    /// <summary>Runs zramd to completion (a verb, or a daemon start that must fail) and returns its exit code.</summary>
    public static (int ExitCode, string Stdout, string Stderr) Run(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null, int timeoutSeconds = 60)
    {
        using ZramdProcess process = Start(args, environment);
        int code = process.WaitForExit(TimeSpan.FromSeconds(timeoutSeconds));
        return (code, process.StandardOutput, process.StandardError);
    }

    public int WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"zramd did not exit within {timeout}; stderr so far:\n{StandardError}");
        }

        _process.WaitForExit(); // Drains the redirected streams.
        return _process.ExitCode;
    }

    /// <summary>Waits until standard error (or output) contains <paramref name="text"/>, <paramref name="times"/> times
    /// in one of them; fails if the process exits first.</summary>
    public void WaitForOutput(string text, TimeSpan timeout, int times = 1)
    {
        var clock = Stopwatch.StartNew();
        while (Count(StandardError, text) < times && Count(StandardOutput, text) < times)
        {
            if (_process.HasExited)
            {
                _process.WaitForExit(); // drains the streams: the text may have been read only now
                if (Count(StandardError, text) >= times || Count(StandardOutput, text) >= times)
                {
                    return;
                }

                throw new InvalidOperationException($"zramd exited ({_process.ExitCode}) before printing '{text}'; stderr:\n{StandardError}");
            }

            if (clock.Elapsed > timeout)
            {
                throw new TimeoutException($"zramd did not print '{text}' {times} time(s) within {timeout}; stderr:\n{StandardError}");
            }

            Thread.Sleep(20);
        }
    }

    private static int Count(string haystack, string text)
    {
        int count = 0;
        for (int at = haystack.IndexOf(text, StringComparison.Ordinal); at >= 0; at = haystack.IndexOf(text, at + text.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }

    /// <summary>SIGTERM, as systemd stops a service.</summary>
    public void Terminate()
    {
        using var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }

        _process.Dispose();
    }

    private void Append(StringBuilder target, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_lock)
        {
            target.Append(line).Append('\n');
        }
    }
}
