using System.Diagnostics;
using Xunit.Abstractions;
using ZramDaemon.Tests.Daemon;

namespace ZramDaemon.Tests.Faults;

/// <summary>The short version of scripts/soak.sh: the same fio layout against the real zramd for 15 s. It fails
/// on a verify error, a failed write on a verified device, no compaction, no ENOSPC on the churn device, or nothing
/// written back or deduplicated on the device with every feature on.
/// It runs alone: with other tests beside it on two cores, fio moved too little in 15 s for the pool to fragment.</summary>
[Collection(FaultCollection.Name)]
public class SoakTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_short_soak_with_fio_verifies_every_block_through_compaction_and_ENOSPC()
    {
        string root = Repository.RepositoryRoot.Path;
        var info = new ProcessStartInfo("bash", [Path.Combine(root, "scripts", "soak.sh")])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = root,
        };
        info.Environment["SOAK_SECONDS"] = "15";
        info.Environment["SOAK_ZRAMD"] = ZramdProcess.DllPath;
        using var process = Process.Start(info)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync(timeout.Token);
        output.WriteLine(await stdout);
        Assert.True(process.ExitCode == 0, $"soak failed:\n{await stdout}\n{await stderr}");
        Assert.Contains("SOAK PASSED", await stdout);
    }
}
