using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using Xunit.Abstractions;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>
/// Review (memory): what the pool holds resident against mem_limit (zram-resident-limit). The pool's arenas hold
/// exactly its counted pages (TotalPages, in mem_used_total) plus its warm pages (freed runs kept resident for reuse,
/// up to 32 MiB, PageSource.WarmLimitPages; checked page by page with mincore in
/// ZsAlloc.Tests.Pool.RevMemArenaResidencyTests), so mem_used_total + PagesWarm x 4096 is the device's resident
/// memory, exactly. docs/device.md: "mem_limit applies to mem_used_total", and zram-resident-limit is what keeps a swap
/// device from taking the machine's last free pages; warm pages are not in mem_used_total and the limit never sees them.
/// They go back only when a background tick finds the pool idle (PageSource.ReleaseWarmIfUnused: no run freed or
/// reused since the previous tick), at a compaction, or past 32 MiB (half of them): a workload that keeps freeing and
/// reusing runs (a churn of incompressible pages) keeps them for as long as it runs, whatever the limit.
/// </summary>
public sealed class RevMemWarmPagesAtLimitTests(ITestOutputHelper output)
{
    private const int Page = ZramDevice.PageSize;

    [Fact]
    public void Resident_pool_memory_stays_within_mem_limit_while_pages_churn()
    {
        const long limit = 40L << 20;
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = 256L << 20, MemLimit = limit },
            NullLoggerFactory.Instance);
        var random = new Random(5);
        var page = new byte[Page];

        // 29.3 MiB of incompressible pages (one pool page each), under the 90% compaction watermark (36 MiB).
        const int huge = 7500;
        for (int i = 0; i < huge; i++)
        {
            random.NextBytes(page);
            Assert.Equal(NbdError.None, device.Write((long)i * Page, page, fua: false));
        }

        // The same blocks rewritten with pages that compress to about half: their huge pages are freed (1-page runs,
        // which the new 2 KiB objects' zspages cannot use) and stay warm.
        for (int i = 0; i < huge; i++)
        {
            Array.Clear(page);
            random.NextBytes(page.AsSpan(0, Page / 2));
            Assert.Equal(NbdError.None, device.Write((long)i * Page, page, fua: false));
        }

        // Then a steady churn of 256 incompressible pages for 3 s (three background ticks): each overwrite frees a run
        // and takes one, so the pool is never idle.
        long worst = 0;
        string worstAt = "";
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int round = 0; clock.Elapsed < TimeSpan.FromSeconds(3); round++)
        {
            for (int i = 0; i < 256; i++)
            {
                random.NextBytes(page);
                Assert.Equal(NbdError.None, device.Write((long)(huge + i) * Page, page, fua: false));
            }

            long used = device.GetStats().MemUsedTotal;
            long warm = (long)device.GetPoolStats().PagesWarm * Page;
            if (used + warm > worst)
            {
                worst = used + warm;
                worstAt = $"round {round} at {clock.Elapsed.TotalMilliseconds:F0} ms: mem_used_total {used >> 10} KiB + {warm >> 10} KiB warm";
            }

            Thread.Sleep(10);
        }

        long finalUsed = device.GetStats().MemUsedTotal;
        long finalWarm = (long)device.GetPoolStats().PagesWarm * Page;
        output.WriteLine($"worst {worst >> 10} KiB ({worstAt}); after 3 s: {finalUsed >> 10} KiB + {finalWarm >> 10} KiB warm");
        Assert.True(finalUsed + finalWarm <= limit,
            $"after 3 s of churn the pool holds {(finalUsed + finalWarm) >> 10} KiB resident (mem_used_total {finalUsed >> 10} KiB + "
            + $"{finalWarm >> 10} KiB of warm pages no counter shows) with mem_limit {limit >> 10} KiB; worst sample {worst >> 10} KiB ({worstAt})");
    }
}
