using System.Diagnostics;

namespace ZramDaemon.Tests.Daemon;

/// <summary>Runs a real NBD client (nbdinfo, nbdcopy, Debian's python3 with libnbd) and captures its output.</summary>
public static class ClientTool
{
    /// <summary>Debian's interpreter, where python3-libnbd installs (a python3 earlier on PATH may lack it).</summary>
    public const string Python = "/usr/bin/python3";

    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public Result EnsureSuccess() => ExitCode == 0
            ? this
            : throw new Xunit.Sdk.XunitException($"exit code {ExitCode}\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
    }

    public static Result Run(string file, IEnumerable<string> arguments, int timeoutSeconds = 120)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        using var process = Process.Start(info) ?? throw new InvalidOperationException("cannot start " + file);
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(timeoutSeconds)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', arguments)} did not finish in {timeoutSeconds}s");
        }

        process.WaitForExit();
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>A Python script with libnbd imported as nbd and the export's URI in <c>uri</c>.</summary>
    public static Result PythonNbd(string uri, string script, int timeoutSeconds = 120) =>
        Run(Python, ["-c", $"import nbd, sys\nuri = {Quote(uri)}\n{script}"], timeoutSeconds);

    private static string Quote(string s) => "'" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal) + "'";
}
