using System.Globalization;
using System.Text.RegularExpressions;

namespace ZramDaemon.Vm.Tests.Harness;

/// <summary>
/// One boot of the test VM (scripts/vm/run.sh) running one guest test script: what the guest reported as
/// "ZT: key=value" lines and its "ZT-END rc=N" line, plus the whole console for failure messages.
/// </summary>
public sealed partial class GuestRun
{
    private GuestRun(ProcessResult process, Dictionary<string, string> values, int? guestExitCode)
    {
        Process = process;
        Values = values;
        GuestExitCode = guestExitCode;
    }

    public ProcessResult Process { get; }

    public IReadOnlyDictionary<string, string> Values { get; }

    /// <summary>The test script's exit status, or null when the guest never got to report it (panic, timeout).</summary>
    public int? GuestExitCode { get; }

    public TimeSpan Elapsed => Process.Elapsed;

    /// <param name="socket">zramd's Unix socket, reached from the guest at 10.0.2.100:10809.</param>
    /// <param name="environment">NAME=VALUE pairs for the guest script (kernel command line).</param>
    public static GuestRun Start(VmImage image, string test, string? socket, string memory = "256M",
        TimeSpan? timeout = null, params string[] environment)
    {
        // Generous: the guest is emulated (TCG, one vCPU), and its speed falls with the host's load; a hang still ends.
        TimeSpan limit = timeout ?? TimeSpan.FromMinutes(10);
        var arguments = new List<string> { "-i", image.Initrd, "-m", memory, "-t", ((int)limit.TotalSeconds).ToString(CultureInfo.InvariantCulture) };
        if (socket is not null)
        {
            arguments.Add("-s");
            arguments.Add(socket);
        }

        arguments.Add(test);
        arguments.AddRange(environment);
        // ZT_WATCH=SECONDS in the host's environment reaches every guest: attach.sh and swap.sh then print
        // diagnostics every SECONDS (scripts/vm/guest/watch.c), which a timed-out run's console shows.
        if (Environment.GetEnvironmentVariable("ZT_WATCH") is { Length: > 0 } watch && !environment.Any(e => e.StartsWith("ZT_WATCH=", StringComparison.Ordinal)))
        {
            arguments.Add("ZT_WATCH=" + watch);
        }
        // run.sh's own timeout ends qemu; this one is only a backstop.
        ProcessResult result = ProcessRunner.Run(Path.Combine(Repository.VmScripts, "run.sh"), arguments, limit + TimeSpan.FromSeconds(30));
        Match end = EndLine().Match(result.StandardOutput);
        int? rc = end.Success ? int.Parse(end.Groups[1].Value, CultureInfo.InvariantCulture) : null;
        return new GuestRun(result, KeyValueLines.Parse(result.StandardOutput, "ZT: "), rc);
    }

    public string this[string key] =>
        Values.TryGetValue(key, out string? value) ? value : throw new KeyNotFoundException($"the guest did not report '{key}'.\n{Console}");

    public long Number(string key) => long.Parse(this[key], CultureInfo.InvariantCulture);

    /// <summary>The console (kernel messages and the guest test's output), for failure messages.</summary>
    public string Console => Process.Describe();

    /// <summary>Fails with the console unless the guest script ran to the end and exited 0.</summary>
    public void AssertCompleted()
    {
        Assert.True(GuestExitCode == 0, $"the guest test did not complete (rc={GuestExitCode?.ToString(CultureInfo.InvariantCulture) ?? "none"}).\n{Console}");
    }

    [GeneratedRegex(@"ZT-END rc=(\d+)")]
    private static partial Regex EndLine();
}
