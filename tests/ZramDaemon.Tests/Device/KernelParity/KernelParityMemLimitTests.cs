using System.Globalization;
using System.Text;
using Xunit.Abstractions;

namespace ZramDaemon.Tests.Device.KernelParity;

/// <summary>
/// Scenario 4: the same mem_limit on a kernel zram device and on zramd; incompressible pages written to each until a
/// write fails, then <see cref="MemLimitScenario.ExtraAttempts"/> more writes that should fail too; then a discard of a
/// few stored pages and as many new writes, which the room made should take. Each side is driven on its own (the
/// same page contents in the same order), since the two may stop at different pages.
/// </summary>
public sealed class KernelParityMemLimitTests(MemLimitScenarioFixture fixture, ITestOutputHelper output) : IClassFixture<MemLimitScenarioFixture>
{
    private MemLimitScenario Scenario
    {
        get
        {
            MemLimitScenario scenario = fixture.Scenario;
            output.WriteLine(scenario.Log.ToString());
            return scenario;
        }
    }

    /// <summary>The kernel stores pages while its pool's pages stay within the limit: limit / 4096 huge pages exactly.</summary>
    [KernelZramFact]
    public void The_kernel_stores_limit_over_page_size_huge_pages()
        => Assert.Equal(MemLimitScenario.Limit / ParityPages.PageSize, Scenario.KernelStored);

    /// <summary>
    /// zramd's limit bounds its mem_used_total, metadata included (docs/device.md), where the kernel's bounds its pool
    /// pages: so under the same limit zramd stores the pages that fit beside its metadata, exactly (measured: 965
    /// against the kernel's 1,024 at 4 MiB, about 240 KB of metadata for a 64 MiB device), and no page fewer.
    /// </summary>
    [KernelZramFact]
    public void Zramd_stores_as_many_pages_as_fit_under_the_limit_beside_its_metadata()
    {
        MemLimitScenario s = Scenario;
        long metadata = s.AtLimit.Zramd.MetadataBytes;
        output.WriteLine($"kernel stored {s.KernelStored}, zramd {s.ZramdStored}; zramd metadata {metadata} bytes, mem_used_total {s.AtLimit.Zramd.MemUsedTotal}");
        Assert.Equal((MemLimitScenario.Limit - metadata) / ParityPages.PageSize, s.ZramdStored);
        Assert.Equal(s.KernelStored - ((metadata + ParityPages.PageSize - 1) / ParityPages.PageSize), s.ZramdStored);
    }

    [KernelZramFact]
    public void Failed_writes_count_every_refused_write_on_both()
    {
        MemLimitScenario s = Scenario;
        Assert.Equal(1 + MemLimitScenario.ExtraAttempts, s.AtLimit.KernelIo.FailedWrites);
        Assert.Equal(s.AtLimit.KernelIo.FailedWrites, s.AtLimit.Zramd.FailedWrites);
    }

    /// <summary>At the limit each side's mm_stat says what it stored, counted the same way per page (these pages are
    /// incompressible: a page of pool, raw, each), and the same mem_limit.</summary>
    [KernelZramFact]
    public void Mm_stat_at_the_limit_counts_each_stored_page_as_the_kernel_does()
    {
        MemLimitScenario scenario = Scenario;
        ParitySnapshot s = scenario.AtLimit;
        long k = scenario.KernelStored, z = scenario.ZramdStored;
        const long page = ParityPages.PageSize;
        Assert.Multiple(
            () => Assert.Equal(s.Kernel.MemLimit, s.Zramd.MemLimit),
            () => Assert.Equal((k * page, z * page), (s.Kernel.OrigDataSize, s.Zramd.OrigDataSize)),
            () => Assert.Equal((k * page, z * page), (s.Kernel.ComprDataSize, s.Zramd.ComprDataSize)),
            () => Assert.Equal((k, z), (s.Kernel.HugePages, s.Zramd.HugePages)),
            () => Assert.Equal((k, z), (s.Kernel.HugePagesSince, s.Zramd.HugePagesSince)),
            () => Assert.Equal((k * page, z * page), (s.Kernel.MemUsedTotal, s.ZramdPoolBytes)));
    }

    /// <summary>Each side keeps its own accounting within the limit (the kernel: pool pages; zramd: mem_used_total).</summary>
    [KernelZramFact]
    public void Neither_side_passes_the_limit()
    {
        ParitySnapshot s = Scenario.AtLimit;
        Assert.InRange(s.Kernel.MemUsedTotal, 0, MemLimitScenario.Limit);
        Assert.InRange(s.Zramd.MemUsedTotal, 0, MemLimitScenario.Limit);
    }

    [KernelZramFact]
    public void A_discard_at_the_limit_makes_room_for_as_many_pages_on_both()
    {
        MemLimitScenario s = Scenario;
        Assert.Equal(MemLimitScenario.Refill, s.KernelRefilled);
        Assert.Equal(s.KernelRefilled, s.ZramdRefilled);
        Assert.Equal(s.Refilled.KernelIo.FailedWrites, s.Refilled.Zramd.FailedWrites);
        Assert.Equal(s.Refilled.KernelIo.NotifyFree, s.Refilled.Zramd.NotifyFree);
    }

    [KernelZramFact]
    public void Reads_return_the_stored_pages_on_both()
    {
        MemLimitScenario s = Scenario;
        Assert.Equal(0, s.KernelBadReads);
        Assert.Equal(0, s.ZramdBadReads);
    }
}

/// <summary>Runs <see cref="MemLimitScenario"/> once, at the first test that asks.</summary>
public sealed class MemLimitScenarioFixture
{
    private readonly Lazy<MemLimitScenario> _scenario = new(MemLimitScenario.Run);

    internal MemLimitScenario Scenario => _scenario.Value;
}

internal sealed class MemLimitScenario
{
    public const long DiskSize = 64L << 20;
    public const long Limit = 4L << 20;
    public const int ExtraAttempts = 3;
    public const int Refill = 16;
    private const int Seed = 4194304;

    public StringBuilder Log { get; } = new();

    public long KernelStored { get; private set; }

    public long ZramdStored { get; private set; }

    public int KernelRefilled { get; private set; }

    public int ZramdRefilled { get; private set; }

    public int KernelBadReads { get; private set; }

    public int ZramdBadReads { get; private set; }

    public ParitySnapshot AtLimit { get; private set; } = null!;

    public ParitySnapshot Refilled { get; private set; } = null!;

    private static byte[] PageAt(long index) => ParityPages.RandomBytes(new Random(Seed + (int)index)).Data;

    public static MemLimitScenario Run()
    {
        var scenario = new MemLimitScenario();
        using var pair = new ParityPair(DiskSize, Limit);
        scenario.RunOn(pair);
        return scenario;
    }

    private void RunOn(ParityPair pair)
    {
        long pages = DiskSize / ParityPages.PageSize;
        Log.AppendLine(CultureInfo.InvariantCulture, $"kernel device zram{pair.Kernel.Id}, disksize {DiskSize}, mem_limit {Limit} on both; zramd's minimum limit {pair.Zramd.MinimumMemLimit}");

        KernelStored = FillUntilRefused(pages, i => pair.Kernel.TryWritePage(i, PageAt(i)));
        ZramdStored = FillUntilRefused(pages, i => pair.Zramd.Write(i * ParityPages.PageSize, PageAt(i), fua: false) == Nbd.Devices.NbdError.None);
        AtLimit = pair.Snapshot($"at the limit: kernel stored {KernelStored} pages, zramd {ZramdStored}, then {ExtraAttempts} more attempts each");
        Log.Append(AtLimit.Format());

        // A discard of the first pages makes room; as many new pages are written after each side's last stored page.
        pair.Kernel.Discard(0, Refill);
        Assert.Equal(Nbd.Devices.NbdError.None, pair.Zramd.Trim(0, Refill * ParityPages.PageSize));
        KernelRefilled = Enumerable.Range(0, Refill).Count(i => pair.Kernel.TryWritePage(i, PageAt(pages - 1 - i)));
        ZramdRefilled = Enumerable.Range(0, Refill).Count(i => pair.Zramd.Write(i * ParityPages.PageSize, PageAt(pages - 1 - i), fua: false) == Nbd.Devices.NbdError.None);
        Refilled = pair.Snapshot($"after discarding pages 0-{Refill - 1} and writing them anew: kernel took {KernelRefilled}, zramd {ZramdRefilled}");
        Log.Append(Refilled.Format());

        KernelBadReads = CountBadReads(KernelStored, KernelRefilled, (i, page) => pair.Kernel.ReadPage(i, page));
        ZramdBadReads = CountBadReads(ZramdStored, ZramdRefilled, (i, page) => Assert.Equal(Nbd.Devices.NbdError.None, pair.Zramd.Read(i * ParityPages.PageSize, page)));
        Log.AppendLine(CultureInfo.InvariantCulture, $"reads: kernel {KernelBadReads} wrong, zramd {ZramdBadReads} wrong");
    }

    /// <summary>Writes pages 0, 1... until one is refused, then <see cref="ExtraAttempts"/> more; returns how many were stored.</summary>
    private static long FillUntilRefused(long pages, Func<long, bool> write)
    {
        long index = 0;
        while (index < pages && write(index))
        {
            index++;
        }

        for (int i = 1; i <= ExtraAttempts && index + i < pages; i++)
        {
            Assert.False(write(index + i), $"a write after the first refused one (page {index + i}) was taken");
        }

        return index;
    }

    private static int CountBadReads(long stored, int refilled, Action<long, byte[]> read)
    {
        long pages = DiskSize / ParityPages.PageSize;
        var page = new byte[ParityPages.PageSize];
        int bad = 0;
        for (long i = 0; i < stored + ExtraAttempts + 1; i++)
        {
            byte[] expected = i < refilled ? PageAt(pages - 1 - i) : i < Refill ? new byte[ParityPages.PageSize] : i < stored ? PageAt(i) : new byte[ParityPages.PageSize];
            read(i, page);
            bad += page.AsSpan().SequenceEqual(expected) ? 0 : 1;
        }

        return bad;
    }
}
