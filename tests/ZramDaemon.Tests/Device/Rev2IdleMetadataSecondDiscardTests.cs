using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using Xunit.Abstractions;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>
/// Review (rev2) of the idle tick's metadata shrink (ZramDevice.CompactionDue, reason "idle metadata"): it runs only
/// when pool.HandleCells differs from <c>_handleCellsAtIdleShrink</c>, the HandleCells seen at the last idle shrink,
/// taken before that shrink cut the table. Handle cells are created one per object in order, so filling the device
/// again with as many pages brings HandleCells back to exactly that value: after the second whole-device discard the
/// tick sees the "same" table and never gives the handle cells (and the dedup index) back, for as long as it idles.
/// </summary>
public sealed class Rev2IdleMetadataSecondDiscardTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_second_fill_and_whole_device_discard_gives_the_metadata_back_like_the_first(bool dedup)
    {
        const long size = 1L << 30;
        const long pages = size / ZramDevice.PageSize;
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = size, Dedup = dedup }, NullLoggerFactory.Instance);
        long fresh = device.GetStats().MemUsedTotal;
        var page = new byte[ZramDevice.PageSize];
        var results = new List<(long Full, long After, long Cells, long Compactions)>();
        for (int cycle = 0; cycle < 2; cycle++)
        {
            for (long p = 0; p < pages; p++)
            {
                DevicePages.TextPage((int)(p % 256)).CopyTo(page, 0);
                BitConverter.TryWriteBytes(page.AsSpan(0, 8), p);
                Assert.Equal(NbdError.None, device.Write(p * ZramDevice.PageSize, page, fua: false));
            }

            ZramStats full = device.GetStats();
            long cellsFull = device.GetPoolStats().HandleCells;
            Assert.Equal(NbdError.None, device.Trim(0, size));

            // Background ticks (1 s each): the tick after the discard sees the allocation drop, the next one is idle. Four
            // suffice on a quiet machine; a loaded one gets up to 60 s (a fixed 4.5 s could end before the shrink).
            for (var clock = System.Diagnostics.Stopwatch.StartNew(); device.GetStats().MemUsedTotal - fresh >= 1 << 20 && clock.Elapsed < TimeSpan.FromSeconds(60);)
            {
                Thread.Sleep(100); // not a spin: the stats take every size class's lock, which the awaited tick needs too
            }

            ZramStats after = device.GetStats();
            Assert.Equal(0, after.OrigDataSize);
            output.WriteLine($"dedup={dedup} cycle {cycle}: fresh {fresh}, full {full.MemUsedTotal} (handle cells {cellsFull}), "
                + $"after discard and idle ticks {after.MemUsedTotal} (metadata {after.MetadataBytes}, handle cells {device.GetPoolStats().HandleCells}, compactions {after.CompactionRuns})");
            results.Add((full.MemUsedTotal, after.MemUsedTotal, cellsFull, after.CompactionRuns));
        }

        // The idle shrink's own threshold is 1 MiB of idle metadata: below it after each cycle.
        Assert.True(results[0].After - fresh < 1 << 20,
            $"dedup={dedup}: the first discard left {results[0].After - fresh} bytes over fresh (precondition: the idle shrink works once)");
        Assert.True(results[1].After - fresh < 1 << 20,
            $"dedup={dedup}: after the SECOND fill (handle cells {results[1].Cells}, as the first's {results[0].Cells}) and whole-device discard, "
            + $"60 s of idle ticks left mem_used_total {results[1].After - fresh} bytes over the fresh device's {fresh} "
            + $"(first cycle: {results[0].After - fresh}); no idle compaction ran ({results[0].Compactions} -> {results[1].Compactions} runs): "
            + "CompactionDue compares HandleCells with the value it saw before the last idle shrink, which the same fill reproduces");
    }

}
