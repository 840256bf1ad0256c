using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit.Abstractions;
using ZramDaemon.Hosting;
using ZramDaemon.Tests.Daemon;

namespace ZramDaemon.Tests.Hosting;

/// <summary>
/// The daemon collects what connections and verbs leave once it has gone quiet (<see cref="IdleCollector"/>): the
/// decision on the runtime's counters, and a real daemon that collects after a few hundred libnbd connections.
/// </summary>
public sealed partial class IdleCollectorTests(ITestOutputHelper output)
{
    private const long MiB = 1 << 20;

    [Fact]
    public void Nothing_is_collected_below_the_threshold_however_quiet()
    {
        var collector = new IdleCollector(NullLogger.Instance, allocated: 100 * MiB, gen0Collections: 7);
        long allocated = 100 * MiB;
        int ticks = 0;

        // A status poll's worth each interval: quiet every time, and no collection until the threshold.
        while (allocated + (32 << 10) - (100 * MiB) < IdleCollector.Threshold)
        {
            allocated += 32 << 10;
            Assert.False(collector.ShouldCollect(allocated, 7), $"after {++ticks} intervals: {allocated - (100 * MiB)} bytes");
        }

        allocated += 32 << 10;
        Assert.True(ticks > 60, $"{ticks}");
        Assert.True(collector.ShouldCollect(allocated, 7));
    }

    [Fact]
    public void A_busy_interval_waits_for_a_quiet_one()
    {
        var collector = new IdleCollector(NullLogger.Instance, allocated: 0, gen0Collections: 0);
        Assert.False(collector.ShouldCollect(3 * MiB, 0)); // 3 MiB in one interval: a burst under way
        Assert.False(collector.ShouldCollect(6 * MiB, 0)); // still going
        Assert.True(collector.ShouldCollect(6 * MiB, 0)); // quiet, 6 MiB since the start
    }

    [Fact]
    public void A_collection_the_runtime_ran_itself_starts_the_count_again()
    {
        var collector = new IdleCollector(NullLogger.Instance, allocated: 0, gen0Collections: 0);
        Assert.False(collector.ShouldCollect(3 * MiB, 0));
        Assert.False(collector.ShouldCollect(3 * MiB + (64 << 10), 1)); // the runtime collected: 64 KiB since
        Assert.False(collector.ShouldCollect(3 * MiB + (128 << 10), 1));
        Assert.False(collector.ShouldCollect(5 * MiB + (128 << 10), 1)); // busy again
        Assert.True(collector.ShouldCollect(5 * MiB + (130 << 10), 1)); // quiet, 2 MiB past the runtime's collection
    }

    /// <summary>A real daemon (log-level debug) and 300 connections of libnbd, each writing and reading a block: the
    /// daemon logs a collection within a few intervals after they end, of at least the threshold.</summary>
    [Fact]
    public void A_daemon_collects_what_hundreds_of_connections_left_once_they_are_gone()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig("[zramd]\nlog-level = debug\n[zram0]\nzram-size = 16M\n");
        ClientTool.PythonNbd(daemon.Uri(), """
            block = bytes(range(256)) * 16
            for i in range(300):
                h = nbd.NBD()
                h.connect_uri(uri)
                h.pwrite(block, (i % 4096) * 4096)
                assert h.pread(4096, (i % 4096) * 4096) == block
                h.shutdown()
            """).EnsureSuccess();

        daemon.Process.WaitForOutput("idle: collected the managed heap", TimeSpan.FromSeconds(60));
        Match line = CollectedLine().Match(daemon.Process.StandardError);
        output.WriteLine(line.Value);
        Assert.True(line.Success, daemon.Process.StandardError);
        long allocatedKib = long.Parse(line.Groups["kib"].Value, NumberStyles.Integer, CultureInfo.InvariantCulture);
        Assert.True(allocatedKib * 1024 >= IdleCollector.Threshold, line.Value);
    }

    [GeneratedRegex(@"idle: collected the managed heap after (?<kib>\d+) KiB[^\n]*")]
    private static partial Regex CollectedLine();
}
