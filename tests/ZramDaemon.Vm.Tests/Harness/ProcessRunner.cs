using System.Diagnostics;
using System.Text;

namespace ZramDaemon.Vm.Tests.Harness;

/// <summary>The result of a finished process: exit code and what it printed.</summary>
public sealed record ProcessResult(int ExitCode, string StandardOutput, string StandardError, TimeSpan Elapsed)
{
    public string Describe() => $"exit {ExitCode} after {Elapsed.TotalSeconds:F1} s\n--- stdout\n{StandardOutput}\n--- stderr\n{StandardError}";
}

/// <summary>Runs a command to completion, capturing both streams, killing it (and its children) at the timeout.</summary>
public static class ProcessRunner
{
    public static ProcessResult Run(string fileName, IEnumerable<string> arguments, TimeSpan timeout,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        if (environment is not null)
        {
            foreach ((string key, string value) in environment)
            {
                info.Environment[key] = value;
            }
        }

        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        var clock = Stopwatch.StartNew();
        using var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (stdout) { stdout.AppendLine(e.Data); } } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (stderr) { stderr.AppendLine(e.Data); } } };
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            lock (stderr)
            {
                stderr.AppendLine($"[killed after {timeout.TotalSeconds:F0} s]");
            }
        }

        process.WaitForExit(); // flushes the asynchronous readers
        lock (stdout)
        {
            lock (stderr)
            {
                return new ProcessResult(process.HasExited ? process.ExitCode : -1, stdout.ToString(), stderr.ToString(), clock.Elapsed);
            }
        }
    }
}
