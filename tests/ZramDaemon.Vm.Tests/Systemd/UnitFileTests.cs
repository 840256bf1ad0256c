using ZramDaemon.Vm.Tests.Harness;

namespace ZramDaemon.Vm.Tests.Systemd;

public sealed class UnitFileTests
{
    public static TheoryData<string> Units => new() { "zramd.service", "zramd-swap.service", "zramd-scratch.service", "mnt-zram.mount" };

    /// <summary>systemd-analyze verify loads the unit and the units it names from the same folder, checks
    /// every directive, dependency and ordering cycle, and that each ExecStart binary exists: /usr/bin/zramd is
    /// pointed at the zramd the solution built.</summary>
    [Theory]
    [MemberData(nameof(Units))]
    public void Systemd_analyze_verify_reports_nothing(string unit)
    {
        string folder = UnitFolder.CopyWithZramd(Path.Combine(Repository.Root, "systemd"), Repository.ZramdApphost);
        try
        {
            ProcessResult result = ProcessRunner.Run("systemd-analyze", ["verify", "--man=no", Path.Combine(folder, unit)], TimeSpan.FromMinutes(1));
            Assert.True(result.ExitCode == 0 && result.StandardError.Trim().Length == 0 && result.StandardOutput.Trim().Length == 0,
                result.Describe());
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void Stopping_zramd_stops_swap_and_the_mount_first()
    {
        string folder = Path.Combine(Repository.Root, "systemd");
        string swap = File.ReadAllText(Path.Combine(folder, "zramd-swap.service"));
        string scratch = File.ReadAllText(Path.Combine(folder, "zramd-scratch.service"));
        string mount = File.ReadAllText(Path.Combine(folder, "mnt-zram.mount"));
        // BindsTo: stopping the unit on the right stops this one; After: this one stops before it.
        Assert.Contains("BindsTo=zramd.service", swap, StringComparison.Ordinal);
        Assert.Contains("After=zramd.service", swap, StringComparison.Ordinal);
        Assert.Contains("ExecStop=/usr/sbin/swapoff /dev/nbd0", swap, StringComparison.Ordinal);
        // The detach after it is skipped while /dev/nbd0 is still swap (swapoff failed): the pages there stay reachable.
        Assert.Contains("ExecStopPost=-/bin/sh -c 'grep -q \"^/dev/nbd0 \" /proc/swaps || exec /usr/bin/zramd detach /dev/nbd0'", swap, StringComparison.Ordinal);
        Assert.Contains("BindsTo=zramd.service", scratch, StringComparison.Ordinal);
        Assert.Contains("ExecStopPost=-/bin/sh -c 'grep -q \"^/dev/nbd1 \" /proc/mounts || exec /usr/bin/zramd detach /dev/nbd1'", scratch, StringComparison.Ordinal);
        Assert.Contains("After=zramd.service", scratch, StringComparison.Ordinal);
        Assert.Contains("BindsTo=zramd-scratch.service", mount, StringComparison.Ordinal);
        Assert.Contains("After=zramd-scratch.service", mount, StringComparison.Ordinal);
    }
}
