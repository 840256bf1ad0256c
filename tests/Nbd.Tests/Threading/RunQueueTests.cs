using System.Text;
using Nbd.Threading;

namespace Nbd.Tests.Threading;

public sealed class RunQueueTests
{
    [Theory]
    [InlineData("0.69 1.04 1.62 3/512 12345\n", true, 3)]
    [InlineData("13.37 5.10 3.00 17/1024 99\n", true, 17)]
    [InlineData("0.00 0.00 0.00 1/80 1", true, 1)]
    [InlineData("0.69 1.04 1.62 /512 12345\n", false, 0)]
    [InlineData("0.69 1.04 1.62 3\n", false, 3)]
    [InlineData("0.69 1.04 3/512 12345\n", false, 0)]
    [InlineData("", false, 0)]
    [InlineData("0.1 0.1 0.1 99999999999/5 1\n", false, 0)]
    public void Reads_the_running_count_of_a_loadavg_line(string line, bool ok, int running)
    {
        Assert.Equal(ok, RunQueue.TryParseRunning(Encoding.ASCII.GetBytes(line), out int parsed));
        if (ok)
        {
            Assert.Equal(running, parsed);
        }
    }

    [Theory]
    [InlineData("0.50 0.40 0.30 1/120 77\n", 2, true)]
    [InlineData("0.50 0.40 0.30 2/120 77\n", 2, true)]
    [InlineData("0.50 0.40 0.30 3/120 77\n", 2, false)]
    [InlineData("garbage\n", 64, false)]
    public void Compares_the_running_count_with_the_cpus(string line, int cpus, bool idle)
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, line);
            Assert.Equal(idle, new RunQueue(path, cpus).HasIdleCpu());
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_file_that_cannot_be_read_never_says_a_cpu_is_free()
        => Assert.False(new RunQueue("/nonexistent/loadavg", 64).HasIdleCpu());

    [Fact]
    public void The_machines_count_is_read_live_and_is_at_least_the_caller()
    {
        // No machine has a million runnable threads, and the caller itself is one of them.
        Assert.True(new RunQueue("/proc/loadavg", 1_000_000).HasIdleCpu());
        Assert.False(new RunQueue("/proc/loadavg", 0).HasIdleCpu());
    }

    [Fact]
    public void Says_no_cpu_is_free_while_more_threads_spin_than_there_are_cpus()
    {
        // Every spinner is runnable, so the count read from /proc/loadavg exceeds the CPUs whatever else runs.
        Assert.True(File.Exists("/proc/loadavg"));
        using var stop = new CancellationTokenSource();
        var spinners = Enumerable.Range(0, Environment.ProcessorCount + 2)
            .Select(_ => new Thread(() => { while (!stop.IsCancellationRequested) { } }) { IsBackground = true })
            .ToList();
        spinners.ForEach(t => t.Start());
        try
        {
            bool sawBusy = false;
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (!sawBusy && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(5);
                sawBusy = !RunQueue.Machine.HasIdleCpu() && !RunQueue.Machine.HasIdleCpu();
            }

            Assert.True(sawBusy);
        }
        finally
        {
            stop.Cancel();
            spinners.ForEach(t => t.Join());
        }
    }
}
