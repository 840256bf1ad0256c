using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using Xunit.Abstractions;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>
/// Review (memory): nothing the device counts grows over cycles of fill / random trim / overwrite / WRITE_ZEROES /
/// compaction / reset: after every reset mem_used_total and metadata_bytes are back to the fresh device's (the kernel's
/// reset frees the pool whole), and the pool holds no page, object, word or warm page; before and after each compaction
/// the counters match a recount of the slot table (and, without dedup, the pool's objects and bytes). Sizes and data change from
/// cycle to cycle (compressible, incompressible, same-filled words), so each cycle grows other size classes and arenas.
/// Passes: measured 73,712 bytes over the fresh device after every reset (the newest arena's owner map and a page of
/// room in each table), the same each cycle.
/// </summary>
public sealed class RevMemCycleTests(ITestOutputHelper output)
{
    private const int Page = ZramDevice.PageSize;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Cycles_of_fill_trim_overwrite_and_reset_come_back_to_the_fresh_device(bool dedup)
    {
        const long size = 128L << 20;
        const int pages = (int)(size / Page);
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = size, Dedup = dedup }, NullLoggerFactory.Instance);
        ZramStats fresh = device.GetStats();
        var random = new Random(11);
        var page = new byte[Page];
        long? firstReset = null;
        for (int cycle = 0; cycle < 8; cycle++)
        {
            for (int p = 0; p < pages; p++)
            {
                Fill(page, random, (p + cycle) % 4, p);
                Assert.Equal(NbdError.None, device.Write((long)p * Page, page, fua: false));
            }

            for (int i = 0; i < 64; i++)
            {
                long first = random.Next(pages - 64);
                Assert.Equal(NbdError.None, device.Trim(first * Page, random.Next(1, 64) * Page));
                Assert.Equal(NbdError.None, device.WriteZeroes(random.Next(pages - 16) * (long)Page, 16 * Page, noHole: i % 2 == 0, fastZero: false));
            }

            for (int p = 0; p < pages; p += 3)
            {
                Fill(page, random, (p + cycle + 1) % 4, p + 1);
                Assert.Equal(NbdError.None, device.Write((long)p * Page, page, fua: false));
            }

            device.FlushDeferredFrees();
            Recount(device, cycle, dedup);
            device.Compact();
            ZramStats compacted = device.GetStats();
            Recount(device, cycle, dedup);
            device.Reset();
            ZramStats reset = device.GetStats();
            // A background compaction racing the reset may hold emptied zspages and give them back after the reset's own
            // compaction, their arenas then released by the next idle tick: a few ticks are allowed for that.
            ZramStats justAfter = reset;
            for (int wait = 0; wait < 30 && reset.MemUsedTotal > fresh.MemUsedTotal + (96 << 10); wait++)
            {
                Thread.Sleep(100);
                reset = device.GetStats();
            }

            if (justAfter.MemUsedTotal != reset.MemUsedTotal)
            {
                output.WriteLine($"cycle {cycle}: right after reset {justAfter.MemUsedTotal} (deferred depth {justAfter.DeferredFreeDepth}), later {reset.MemUsedTotal}");
            }

            ZsAlloc.ZsPoolStats pool = device.GetPoolStats();
            output.WriteLine($"cycle {cycle}: compacted {compacted.MemUsedTotal} (metadata {compacted.MetadataBytes}); reset {reset.MemUsedTotal} "
                + $"(metadata {reset.MetadataBytes}), pool pages {pool.PagesUsed}, objects {pool.Objects}, words {pool.Words}, warm {pool.PagesWarm}");
            Assert.Equal(0, reset.OrigDataSize);
            Assert.Equal(0, reset.ComprDataSize);
            Assert.True(pool.PagesUsed == 0 && pool.Objects == 0 && pool.Words == 0 && pool.PagesWarm == 0,
                $"cycle {cycle}: after reset the pool holds {pool.PagesUsed} pages, {pool.Objects} objects, {pool.Words} words, {pool.PagesWarm} warm pages");
            // The newest arena's owner map (64 KiB) and a page of room in the handle and descriptor tables stay
            // (docs/zsalloc.md: 74 KB over a fresh device after a whole discard); nothing more, and no more each cycle.
            Assert.True(reset.MemUsedTotal <= fresh.MemUsedTotal + (96 << 10),
                $"cycle {cycle}: after reset mem_used_total is {reset.MemUsedTotal} (metadata {reset.MetadataBytes}), the fresh device's {fresh.MemUsedTotal}");
            firstReset ??= reset.MemUsedTotal;
            Assert.True(reset.MemUsedTotal <= firstReset,
                $"cycle {cycle}: after reset mem_used_total is {reset.MemUsedTotal}, after the first cycle's reset {firstReset}");
        }
    }

    /// <summary>The counters against a walk of the slot table (and, for objects, the pool's own totals).</summary>
    private static void Recount(ZramDevice device, int cycle, bool dedup)
    {
        long stored = 0, same = 0, huge = 0, compr = 0, objects = 0, words = 0;
        for (int i = 0; i < device.Slots.Count; i++)
        {
            device.Slots.Peek(i, out uint value, out uint info);
            stored += (info & SlotInfo.Written) != 0 ? 1 : 0;
            same += (info & (SlotInfo.Written | SlotInfo.Same)) == (SlotInfo.Written | SlotInfo.Same) ? 1 : 0;
            words += SlotInfo.HasWord(info, value) ? 1 : 0;
            if (SlotInfo.HasObject(info))
            {
                objects++;
                compr += SlotInfo.Size(info);
                huge += (info & SlotInfo.Huge) != 0 ? 1 : 0;
            }
        }

        ZramStats stats = device.GetStats();
        ZsAlloc.ZsPoolStats pool = device.GetPoolStats();
        Assert.True(stats.OrigDataSize == stored * Page, $"cycle {cycle}: orig_data_size {stats.OrigDataSize}, the slots hold {stored} pages");
        Assert.True(stats.SamePages == same, $"cycle {cycle}: same_pages {stats.SamePages}, the slots hold {same}");
        Assert.True(pool.Words == words, $"cycle {cycle}: the pool holds {pool.Words} words, the slots name {words}");
        if (!dedup)
        {
            Assert.True(stats.ComprDataSize == compr, $"cycle {cycle}: compr_data_size {stats.ComprDataSize}, the slots' objects hold {compr}");
            Assert.True(stats.HugePages == huge, $"cycle {cycle}: huge_pages {stats.HugePages}, the slots hold {huge}");
            Assert.True(pool.Objects == objects, $"cycle {cycle}: the pool holds {pool.Objects} objects, the slots name {objects}");
            Assert.True(pool.BytesStored == compr, $"cycle {cycle}: the pool stores {pool.BytesStored} bytes, the slots' objects {compr}");
        }
    }

    private static void Fill(byte[] page, Random random, int kind, int p)
    {
        switch (kind)
        {
            case 0:
                DevicePages.TextPage(p).CopyTo(page, 0);
                BitConverter.TryWriteBytes(page.AsSpan(0, 8), (long)p);
                break;
            case 1:
                random.NextBytes(page);
                break;
            case 2:
                DevicePages.SameFilled(0x0102030405060708UL + (ulong)p).CopyTo(page, 0);
                break;
            default:
                Array.Clear(page);
                random.NextBytes(page.AsSpan(0, random.Next(64, 3000)));
                break;
        }
    }
}
