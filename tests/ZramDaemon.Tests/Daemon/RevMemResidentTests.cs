using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;
using Xunit.Abstractions;
using Nbd.Devices;
using Nbd.Protocol;
using ZramDaemon.Tests.Faults;

namespace ZramDaemon.Tests.Daemon;

/// <summary>
/// Review (memory): the resident memory of a real zramd process against the mem_used_total it reports, while data
/// is stored and after it is discarded and compacted. Each test runs with dedup off (the control: the pool, the slot
/// table and the handle cells, which are native memory) and on (the dedup index's arrays, which are managed arrays).
/// </summary>
public sealed class RevMemResidentTests(ITestOutputHelper output)
{
    private const int Page = 4096;
    private const long DiskSize = 8L << 30;
    private const int Pages = (int)(DiskSize / Page);
    private const int PagesPerWrite = 1024;

    // A fixed allowance over the 5% on top of what mem_used_total says, for what the runtime itself grows by while it
    // serves a first connection (code paged in, a GC heap grown once, thread stacks): docs/device.md puts it at about
    // 6 MiB; measured here 6.8-7.1 MiB with dedup off on 1, 4 and 8 GiB fills alike (a fixed cost). The filled device's
    // mem_used_total grows by some 115 MiB (dedup off) and 165 MiB (on) here.
    private const long RuntimeSlackKiB = 8 << 10;

    /// <summary>
    /// Every block of an 8 GiB device (2 Mi blocks) gets a page of its own (a counter in otherwise zero bytes: distinct, not
    /// same-filled, compresses to a few dozen bytes). docs/device.md: RSS grows within 5% of mem_used_total as data is
    /// stored, and with dedup "the index's arrays count in mem_used_total". The index grows by doubling with
    /// <c>Array.Resize</c> and new bucket arrays (src/ZramDaemon/Device/Dedup/DedupIndex.cs, Grow): every
    /// smaller generation is left to the GC, touched, and counted nowhere. The daemon allocates almost nothing on the
    /// managed heap (no gen2 collection comes to free them) and runs with RetainVMGarbageCollection (ZramDaemon.csproj),
    /// so what the GC would free stays resident anyway: about as many bytes again as the index's current arrays.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Resident_memory_grows_with_mem_used_total_as_distinct_pages_are_stored(bool dedup)
    {
        using RunningDaemon daemon = StartDaemon(dedup);
        await TouchSlotTable(daemon);
        long rss0 = ResidentKiB(daemon);
        long used0 = MemUsedTotal(daemon);

        await FillDistinct(daemon);
        await Task.Delay(1500); // a background tick: nothing to free, but let the daemon settle
        long rss1 = ResidentKiB(daemon);
        JsonElement status = daemon.Status();
        long used1 = status.GetProperty("mem_used_total").GetInt64();
        long grownKiB = rss1 - rss0;
        long usedKiB = (used1 - used0) >> 10;
        output.WriteLine($"dedup={dedup}: VmRSS {rss0} -> {rss1} KiB (+{grownKiB}), mem_used_total {used0 >> 10} -> {used1 >> 10} KiB (+{usedKiB})");
        Assert.True(grownKiB <= (usedKiB * 105 / 100) + RuntimeSlackKiB,
            $"dedup={dedup}: storing {Pages} distinct pages grew VmRSS by {grownKiB >> 10} MiB ({grownKiB} KiB) while mem_used_total "
            + $"grew by {usedKiB >> 10} MiB ({usedKiB} KiB, metadata_bytes now {status.GetProperty("metadata_bytes").GetInt64() >> 10} KiB): "
            + $"{100.0 * grownKiB / usedKiB:F1}%, past 105% + {RuntimeSlackKiB >> 10} MiB");
    }

    /// <summary>
    /// The same fill, then a discard of the whole device and <c>zramd compact</c>, then two idle ticks. docs/zsalloc.md:
    /// the pool's arenas are unmapped, its handle cells and descriptors cut; docs/device.md: "a discard of the whole
    /// device ... the index's arrays, grown for the data, go back as the pool's metadata does" (ZramDevice.CompactCore
    /// calls DedupIndex.Shrink). mem_used_total falls by all of it; VmRSS must fall by at least 90% of that. The
    /// index's arrays were managed: dropping the reference took them out of mem_used_total, but nothing gave their
    /// pages back (no gen2 collection runs, and RetainVM would keep them anyway). With the last page kept
    /// (<paramref name="keepLastPage"/>), the index keeps its arrays and gives back the pages of free entries, which
    /// mem_used_total stops counting: the same must hold of VmRSS (the daemon runs with its memory locked, and the
    /// kernel refuses MADV_DONTNEED on locked pages).
    /// </summary>
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task A_whole_device_discard_and_compaction_give_back_what_mem_used_total_no_longer_counts(bool dedup, bool keepLastPage)
    {
        using RunningDaemon daemon = StartDaemon(dedup);
        await TouchSlotTable(daemon);
        await FillDistinct(daemon);
        await Task.Delay(1500);
        long rss1 = ResidentKiB(daemon);
        long used1 = MemUsedTotal(daemon);

        using (WireClient client = await WireClient.OpenAsync(daemon.Socket, "zram0"))
        {
            for (long offset = 0; offset < DiskSize; offset += 1L << 30)
            {
                bool last = offset + (1L << 30) == DiskSize;
                Assert.Equal(NbdError.None, await client.TrimAsync(offset, (1 << 30) - (last && keepLastPage ? Page : 0)));
            }
        }

        (int code, _, string stderr) = daemon.Cli("compact", "zram0");
        Assert.True(code == 0, stderr);
        await Task.Delay(2500); // two idle ticks: warm pages and the deferred queue's pages go back
        long rss2 = ResidentKiB(daemon);
        JsonElement status = daemon.Status();
        long used2 = status.GetProperty("mem_used_total").GetInt64();
        Assert.Equal(keepLastPage ? Page : 0, status.GetProperty("orig_data_size").GetInt64());

        long fellKiB = (used1 - used2) >> 10;
        long rssFellKiB = rss1 - rss2;
        output.WriteLine($"dedup={dedup}, keepLastPage={keepLastPage}: VmRSS {rss1} -> {rss2} KiB (-{rssFellKiB}), mem_used_total {used1 >> 10} -> {used2 >> 10} KiB (-{fellKiB})");
        Assert.True(rssFellKiB >= fellKiB * 90 / 100,
            $"dedup={dedup}: after discarding all {Pages} pages and compacting, mem_used_total fell by {fellKiB >> 10} MiB "
            + $"({used1 >> 10} -> {used2 >> 10} KiB) but VmRSS only by {rssFellKiB >> 10} MiB ({rss1} -> {rss2} KiB): "
            + $"{fellKiB - rssFellKiB} KiB that mem_used_total no longer counts stay resident");
    }

    private static RunningDaemon StartDaemon(bool dedup) => RunningDaemon.StartWithConfig($"""
        [zram0]
        zram-size = {DiskSize >> 20}M
        compression-algorithm = lz4
        dedup = {(dedup ? "yes" : "no")}
        """);

    /// <summary>WRITE_ZEROES with NO_HOLE over the whole device: every slot becomes a same-filled zero page (no pool
    /// memory), so the slot table's pages (counted in mem_used_total from the start, touched only as slots are written)
    /// are resident before the first measure.</summary>
    private static async Task TouchSlotTable(RunningDaemon daemon)
    {
        using WireClient client = await WireClient.OpenAsync(daemon.Socket, "zram0");
        for (long offset = 0; offset < DiskSize; offset += 1L << 30)
        {
            var header = new byte[RequestHeader.Size];
            new RequestHeader(NbdMagic.Request, CommandFlags.NoHole, CommandType.WriteZeroes, 7, (ulong)offset, 1u << 30).Write(header);
            await client.SendAsync(header);
            byte[] reply = await client.ReceiveExactAsync(16);
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4)));
        }

        await Task.Delay(1200);
    }

    /// <summary>Every block: a 64-bit counter at the start of a zero page (distinct pages, a few dozen bytes each with
    /// lz4), 4 MiB per request; the connection is closed before anything is measured (its buffers go with it).</summary>
    private static async Task FillDistinct(RunningDaemon daemon)
    {
        using WireClient client = await WireClient.OpenAsync(daemon.Socket, "zram0");
        var data = new byte[PagesPerWrite * Page];
        for (int first = 0; first < Pages; first += PagesPerWrite)
        {
            for (int i = 0; i < PagesPerWrite; i++)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(i * Page), (ulong)(first + i) * 0x9E3779B97F4A7C15UL | 1);
            }

            Assert.Equal(NbdError.None, await client.WriteAsync((long)first * Page, data));
        }
    }

    private static long MemUsedTotal(RunningDaemon daemon) => daemon.Status().GetProperty("mem_used_total").GetInt64();

    private static long ResidentKiB(RunningDaemon daemon)
    {
        string line = File.ReadLines($"/proc/{daemon.Process.Id}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
    }
}
