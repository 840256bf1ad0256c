using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace ZramDaemon.Tests.Daemon;

/// <summary>
/// zramd under systemd-socket-activate: it binds the sockets, waits for the first client, then execs zramd with
/// them as fds 3.. and LISTEN_FDS/LISTEN_PID set, exactly as systemd does for a .socket unit.
/// </summary>
public sealed class SocketActivator : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _log = new();

    private SocketActivator(Process process)
    {
        _process = process;
        _process.ErrorDataReceived += (_, e) =>
        {
            lock (_log)
            {
                _log.AppendLine(e.Data);
            }
        };
        _process.BeginErrorReadLine();
        _process.BeginOutputReadLine();
    }

    /// <summary>zramd's standard error (and the activator's).</summary>
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

    /// <param name="listen">systemd-socket-activate -l values: a path or [ADDRESS:]PORT.</param>
    /// <param name="activatorOptions">More options of systemd-socket-activate (e.g. --datagram).</param>
    /// <param name="listenFds">A LISTEN_FDS to give zramd instead of the activator's (a wrong count): set by a shell that
    /// execs zramd, so the pid, and LISTEN_PID with it, stays the activator's.</param>
    public static SocketActivator Start(IEnumerable<string> listen, string runtimeDirectory, IEnumerable<string> zramdArgs, IEnumerable<string>? activatorOptions = null, int? listenFds = null)
    {
        var info = new ProcessStartInfo("systemd-socket-activate") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string option in activatorOptions ?? [])
        {
            info.ArgumentList.Add(option);
        }

        foreach (string where in listen)
        {
            info.ArgumentList.Add("-l");
            info.ArgumentList.Add(where);
        }

        string[] command = listenFds is { } count
            ? ["sh", "-c", $"LISTEN_FDS={count} exec dotnet \"$0\" \"$@\"", ZramdProcess.DllPath]
            : ["dotnet", ZramdProcess.DllPath];
        foreach (string arg in new[] { "-E", "XDG_RUNTIME_DIR=" + runtimeDirectory }.Concat(command).Concat(zramdArgs))
        {
            info.ArgumentList.Add(arg);
        }

        foreach (string name in info.Environment.Keys.Where(k => k.StartsWith("ZRAMD_", StringComparison.Ordinal) || k is "NOTIFY_SOCKET" or "JOURNAL_STREAM" or "WATCHDOG_USEC").ToList())
        {
            info.Environment.Remove(name);
        }

        return new SocketActivator(Process.Start(info) ?? throw new InvalidOperationException("systemd-socket-activate did not start"));
    }

    /// <summary>SIGTERM (zramd has replaced the activator by exec, same pid) and its exit code.</summary>
    public int Stop()
    {
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            kill.WaitForExit();
        }

        Assert.True(_process.WaitForExit(60_000), "zramd did not exit after SIGTERM:\n" + Log);
        _process.WaitForExit();
        return _process.ExitCode;
    }

    /// <summary>Waits for zramd (or the activator) to exit by itself; false if it is still running.</summary>
    public bool WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            return false;
        }

        _process.WaitForExit();
        return true;
    }

    public int ExitCode => _process.ExitCode;

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }

        _process.Dispose();
    }
}
