using Microsoft.Extensions.Logging.Abstractions;
using Xunit.Abstractions;
using ZramDaemon.Hosting;
using ZramDaemon.Tests.Daemon;

namespace ZramDaemon.Tests.Hosting;

/// <summary>
/// The daemon collects what connections and verbs leave once it has gone quiet (<see cref="IdleCollector"/>): the
/// decision on the runtime's counters, and a real daemon that collects after a few hundred libnbd connections.
/// </summary>
public sealed class IdleCollectorTests(ITestOutputHelper output)
{
    private const long MiB = 1 << 20;

    [Fact]
    public void Nothing_is_collected_below_the_threshold_however_quiet()
    {
        var collector = new IdleCollector(NullLogger.Instance, allocated: 100 * MiB, fullCollections: 7, cpu: TimeSpan.Zero);
        long allocated = 100 * MiB;
        int ticks = 0;

        // A status poll's worth each interval: quiet every time, and no collection until the threshold.
        while (allocated + (32 << 10) - (100 * MiB) < IdleCollector.Threshold)
        {
            allocated += 32 << 10;
            Assert.False(collector.ShouldCollect(allocated, 7, TimeSpan.Zero), $"after {++ticks} intervals: {allocated - (100 * MiB)} bytes");
        }

        allocated += 32 << 10;
        Assert.True(ticks > 60, $"{ticks}");
        Assert.True(collector.ShouldCollect(allocated, 7, TimeSpan.Zero));
    }

    [Fact]
    public void An_interval_that_allocated_much_waits_for_a_quiet_one()
    {
        var collector = new IdleCollector(NullLogger.Instance, allocated: 0, fullCollections: 0, cpu: TimeSpan.Zero);
        Assert.False(collector.ShouldCollect(3 * MiB, 0, TimeSpan.Zero)); // 3 MiB in one interval: a burst under way
        Assert.False(collector.ShouldCollect(6 * MiB, 0, TimeSpan.Zero)); // still going
        Assert.True(collector.ShouldCollect(6 * MiB, 0, TimeSpan.Zero)); // quiet, 6 MiB since the start
    }

    /// <summary>Requests allocate nothing: a daemon serving swap looks quiet by allocation alone, so its CPU time counts.</summary>
    [Fact]
    public void An_interval_that_used_the_cpu_waits_for_one_that_did_not()
    {
        var collector = new IdleCollector(NullLogger.Instance, allocated: 0, fullCollections: 0, cpu: TimeSpan.Zero);
        TimeSpan cpu = TimeSpan.Zero;
        Assert.False(collector.ShouldCollect(3 * MiB, 0, cpu)); // the burst that allocated
        cpu += TimeSpan.FromSeconds(2);
        Assert.False(collector.ShouldCollect(3 * MiB, 0, cpu)); // nothing allocated, but 2 s of CPU: requests served
        cpu += IdleCollector.QuietCpu + TimeSpan.FromMilliseconds(1);
        Assert.False(collector.ShouldCollect(3 * MiB, 0, cpu)); // just over the quiet CPU time
        cpu += IdleCollector.QuietCpu;
        Assert.True(collector.ShouldCollect(3 * MiB, 0, cpu)); // at most the quiet CPU time
    }

    /// <summary>A full collection the runtime ran itself took the garbage: the count starts again. A gen0 one does not:
    /// it promotes what connections still held, which becomes garbage of the older generations.</summary>
    [Fact]
    public void A_full_collection_the_runtime_ran_itself_starts_the_count_again()
    {
        var collector = new IdleCollector(NullLogger.Instance, allocated: 0, fullCollections: 0, cpu: TimeSpan.Zero);
        Assert.False(collector.ShouldCollect(3 * MiB, 0, TimeSpan.Zero));
        Assert.False(collector.ShouldCollect(3 * MiB + (64 << 10), 1, TimeSpan.Zero)); // the runtime collected: 64 KiB since
        Assert.False(collector.ShouldCollect(3 * MiB + (128 << 10), 1, TimeSpan.Zero));
        Assert.False(collector.ShouldCollect(5 * MiB + (128 << 10), 1, TimeSpan.Zero)); // busy again
        Assert.True(collector.ShouldCollect(5 * MiB + (130 << 10), 1, TimeSpan.Zero)); // quiet, 2 MiB past the runtime's collection
    }

    /// <summary>A real daemon (log-level debug) and 300 connections of libnbd, each writing and reading a block: the
    /// daemon logs a collection within a few intervals after they end.</summary>
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
        output.WriteLine(daemon.Process.StandardError.Split('\n').First(l => l.Contains("idle: collected", StringComparison.Ordinal)));
    }
}
