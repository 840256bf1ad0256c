using System.Globalization;
using System.Text;
using Xunit.Abstractions;

namespace ZramDaemon.Tests.Device.KernelParity;

/// <summary>
/// Scenario 6 (huge threshold): pages that liblz4 compresses to lengths around both huge thresholds, written one at a
/// time to a kernel zram device and to zramd; after each, the change in huge_pages and compr_data_size on each side
/// says how that side stored the page (raw: +1 and +4096; compressed: +0 and + the compressed length).
/// </summary>
public sealed class KernelParityHugeThresholdTests(ITestOutputHelper output)
{
    private static readonly int[] Targets =
        [.. ParityPages.NearHugeTargets, .. Enumerable.Range(3610, 30), .. Enumerable.Range(3825, 20)];

    private sealed record Outcome(string Page, int Lz4Size, long KernelHuge, long KernelCompr, long ZramdHuge, long ZramdCompr);

    /// <summary>The near-huge pages, one per target length (seeded).</summary>
    private static IEnumerable<(string Name, ParityPage Page)> NearHugePages()
    {
        var random = new Random(3625);
        return Targets.Distinct().Order().Select(t => ($"near {t}", ParityPages.NearHuge(random, t))).ToArray();
    }

    /// <summary>Text pages of every noise level, and random pages (seeded).</summary>
    private static IEnumerable<(string Name, ParityPage Page)> TextPages()
    {
        var random = new Random(4096);
        return Enumerable.Range(0, 400).Select(i => i % 20 == 19
            ? ("random", ParityPages.RandomBytes(random))
            : ($"text {i % 10 / 10.0:F1}", ParityPages.Text(random, i % 10 / 10.0))).ToArray();
    }

    private List<Outcome> Measure(IEnumerable<(string Name, ParityPage Page)> pages, bool print = true) => Measure(pages, out _, print);

    private List<Outcome> Measure(IEnumerable<(string Name, ParityPage Page)> pages, out int zramdHugeClassSize, bool print = true)
    {
        var outcomes = new List<Outcome>();
        using var pair = new ParityPair(16L << 20);
        zramdHugeClassSize = pair.Zramd.HugeClassSize;
        ParitySnapshot before = pair.Snapshot("before");
        int index = 0;
        foreach ((string name, ParityPage page) in pages)
        {
            pair.Write(index++, page.Data);
            ParitySnapshot after = pair.Snapshot(name);
            outcomes.Add(new Outcome(name, page.Lz4Size,
                after.Kernel.HugePages - before.Kernel.HugePages, after.Kernel.ComprDataSize - before.Kernel.ComprDataSize,
                after.Zramd.HugePages - before.Zramd.HugePages, after.Zramd.ComprDataSize - before.Zramd.ComprDataSize));
            before = after;
        }

        (List<long> kernelBad, List<long> zramdBad) = pair.VerifyReads(index);
        Assert.Empty(kernelBad);
        Assert.Empty(zramdBad);

        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture, $"zramd HugeClassSize {pair.Zramd.HugeClassSize}; {outcomes.Count} pages written one at a time");
        table.AppendLine("page        liblz4  kernel:huge compr   zramd:huge compr");
        foreach (Outcome o in outcomes.Where(o => print || o.KernelHuge != o.ZramdHuge || o.KernelCompr != o.ZramdCompr))
        {
            table.AppendLine(CultureInfo.InvariantCulture, $"{o.Page,-11} {o.Lz4Size,6}  {o.KernelHuge,11} {o.KernelCompr,5}  {o.ZramdHuge,10} {o.ZramdCompr,5}{(o.KernelHuge != o.ZramdHuge || o.KernelCompr != o.ZramdCompr ? "  <- differ" : string.Empty)}");
        }

        output.WriteLine(table.ToString());
        return outcomes;
    }

    /// <summary>The kernel's lz4 compresses the near-huge pages to exactly liblz4 1.9.4's lengths (those it stores compressed).</summary>
    [KernelZramFact]
    public void The_kernels_lz4_compresses_near_huge_pages_to_liblz4s_lengths()
    {
        List<Outcome> outcomes = Measure(NearHugePages());
        Assert.All(outcomes.Where(o => o.KernelHuge == 0), o => Assert.Equal(o.Lz4Size, o.KernelCompr));
    }

    /// <summary>
    /// Text pages of every noise level, page by page: zramd's compr_data_size grows by liblz4's length, the kernel's by
    /// its lz4's. They are not byte-identical: measured on 6.18 against liblz4 1.9.4, 11 of 270 text pages came out 1-5
    /// bytes longer in the kernel (never shorter), 43 bytes in all. So the kernel's length is asserted to be liblz4's or
    /// up to <see cref="Lz4PageDrift"/> bytes more, and the total within <see cref="Lz4MeanDrift"/> byte per page.
    /// </summary>
    [KernelZramFact]
    public void The_kernels_lz4_compresses_text_pages_to_liblz4s_lengths_within_a_few_bytes()
    {
        List<Outcome> outcomes = Measure(TextPages(), print: false);
        Outcome[] compressed = outcomes.Where(o => o.KernelHuge == 0).ToArray();
        Outcome[] differ = compressed.Where(o => o.KernelCompr != o.Lz4Size).ToArray();
        output.WriteLine($"{compressed.Length} pages compressed by the kernel; {differ.Length} of other lengths than liblz4's, "
            + $"{compressed.Sum(o => o.KernelCompr - o.Lz4Size)} bytes in all: "
            + string.Join(", ", differ.Select(o => $"{o.Page} kernel {o.KernelCompr} liblz4 {o.Lz4Size}")));
        Assert.All(outcomes.Where(o => o.ZramdHuge == 0), o => Assert.Equal(o.Lz4Size, o.ZramdCompr));
        Assert.All(compressed, o => Assert.InRange(o.KernelCompr, o.Lz4Size, o.Lz4Size + Lz4PageDrift));
        Assert.InRange(compressed.Sum(o => o.KernelCompr - o.Lz4Size), 0, compressed.Length * Lz4MeanDrift);
    }

    /// <summary>The most the kernel's lz4 output of a page was seen longer than liblz4's (5), with room.</summary>
    internal const int Lz4PageDrift = 8;

    /// <summary>The kernel's lz4 output against liblz4's, on average per compressed page: measured 0.16 (43 bytes over 270
    /// text pages) and 0.09 (158 over the mixed scenario's 1,730), bounded at 1.</summary>
    internal const int Lz4MeanDrift = 1;

    /// <summary>The kernel stores raw every page of <see cref="MixedScenario.KernelHugeClassSize"/> (3625) compressed
    /// bytes or more, and compressed those below.</summary>
    [KernelZramFact]
    public void The_kernels_huge_threshold_is_3625()
    {
        List<Outcome> outcomes = Measure(NearHugePages());
        Assert.All(outcomes, o => Assert.Equal(o.Lz4Size >= MixedScenario.KernelHugeClassSize ? 1 : 0, o.KernelHuge));
    }

    /// <summary>
    /// zramd stores raw exactly the pages liblz4 compresses to its own huge class size or more (3837: chains of up to 16
    /// pages and a 4-byte object header, docs/zsalloc.md), and compressed the others, counting liblz4's length; so of
    /// the pages the kernel stores raw (from 3625), those of lengths 3625-3836 zramd keeps compressed, and no other
    /// page is stored differently.
    /// </summary>
    [KernelZramFact]
    public void Zramd_stores_raw_the_kernels_raw_pages_but_those_under_its_own_huge_class_size()
    {
        List<Outcome> outcomes = Measure(NearHugePages(), out int zramdHuge);
        Assert.Equal(3837, zramdHuge);
        Assert.All(outcomes, o =>
        {
            bool raw = o.Lz4Size >= zramdHuge;
            Assert.Equal(raw ? 1 : 0, o.ZramdHuge);
            Assert.Equal(raw ? ParityPages.PageSize : o.Lz4Size, o.ZramdCompr);
        });
        Outcome[] differ = outcomes.Where(o => o.KernelHuge != o.ZramdHuge).ToArray();
        Assert.All(differ, o => Assert.InRange(o.Lz4Size, MixedScenario.KernelHugeClassSize, zramdHuge - 1));
        Assert.Equal(outcomes.Count(o => o.Lz4Size >= MixedScenario.KernelHugeClassSize && o.Lz4Size < zramdHuge), differ.Length);
    }
}
