using System.Globalization;
using System.Text;

namespace ZramDaemon.Tests.Device.KernelParity;

/// <summary>
/// Scenarios 1-3 (and a mem_used_max reset and a device reset after them), run once per variant on a kernel zram device and a
/// zramd device with the same requests; the tests compare the snapshots it takes. Seed and sizes are fixed, so every
/// run drives the same bytes.
/// </summary>
internal sealed class MixedScenario
{
    public const long DiskSize = 64L << 20;
    public const int Count = 3000;
    public const int Overwrites = 600;
    public const int UnwrittenDiscard = 100;
    private const int Seed = 20261207;

    /// <summary>The kernel's huge_class_size with CONFIG_ZSMALLOC_CHAIN_SIZE=8, as KernelParityHugeThresholdTests measures it.</summary>
    public const int KernelHugeClassSize = 3625;

    /// <summary>liblz4 lengths the "outside-band" variant keeps out of its pages: those the kernel stores raw and zramd
    /// compressed (3625-3836, KernelParityHugeThresholdTests), widened by the lz4 drift, so that what still differs there
    /// is not the huge threshold.</summary>
    public const int BandLow = KernelHugeClassSize - KernelParityHugeThresholdTests.Lz4PageDrift;
    public const int BandHigh = 3840;

    private readonly bool _outsideBand;

    private MixedScenario(bool outsideBand) => _outsideBand = outsideBand;

    /// <summary>Stage name → both sides' counters there.</summary>
    public Dictionary<string, ParitySnapshot> Snapshots { get; } = [];

    /// <summary>Stage name → the pages each side read back wrongly.</summary>
    public Dictionary<string, (List<long> Kernel, List<long> Zramd)> Reads { get; } = [];

    public StringBuilder Log { get; } = new();

    /// <summary>zramd's huge class size on the device the scenario ran on.</summary>
    public int ZramdHugeClassSize { get; private set; }

    /// <summary>Stage name → the pages stored then (null: unwritten or discarded), for predictions from liblz4's lengths.</summary>
    public Dictionary<string, ParityPage[]> Stored { get; } = [];

    /// <summary>Runs the scenario; with <paramref name="outsideBand"/>, no page compresses to a length in
    /// [<see cref="BandLow"/>, <see cref="BandHigh"/>] (such pages are drawn again).</summary>
    public static MixedScenario Run(bool outsideBand)
    {
        var scenario = new MixedScenario(outsideBand);
        using var pair = new ParityPair(DiskSize);
        scenario.RunOn(pair);
        return scenario;
    }

    private void RunOn(ParityPair pair)
    {
        var random = new Random(Seed);
        ZramdHugeClassSize = pair.Zramd.HugeClassSize;
        string lengths = _outsideBand ? $"no page of a liblz4 length in {BandLow}-{BandHigh}" : "pages of every length";
        Log.AppendLine(CultureInfo.InvariantCulture, $"kernel device zram{pair.Kernel.Id}, disksize {DiskSize}, zramd huge class size {pair.Zramd.HugeClassSize}; {lengths}");

        // 1. A mixed set of pages.
        ParityPage?[] pages = ParityPages.Mixed(random, Count);
        for (int i = 0; i < Count; i++)
        {
            pages[i] = Allowed(pages[i]!, random);
        }

        for (int i = 0; i < Count; i++)
        {
            pair.Write(i, pages[i]!.Data);
        }

        Log.AppendLine("written: " + string.Join(", ", pages.GroupBy(p => p!.Kind).OrderBy(g => g.Key).Select(g => $"{g.Key} {g.Count()}")));
        Log.AppendLine(CultureInfo.InvariantCulture, $"liblz4 sizes of the compressible pages, summed: {pages.Sum(p => (long)p!.Lz4Size)}");
        Stage(pair, "1-written", Count, pages);

        // 2. A subset overwritten with pages of another kind.
        int[] subset = Enumerable.Range(0, Count).OrderBy(_ => random.Next()).Take(Overwrites).ToArray();
        var transitions = new Dictionary<string, int>();
        foreach (int index in subset)
        {
            PageKind next = pages[index]!.Kind switch
            {
                PageKind.Random => PageKind.SameWord,
                PageKind.SameWord => PageKind.Text,
                PageKind.SameInt => PageKind.Random,
                PageKind.Text => random.Next(2) == 0 ? PageKind.Random : PageKind.NearHuge,
                PageKind.Zero => PageKind.NearHuge,
                _ => PageKind.Zero,
            };
            string key = $"{pages[index]!.Kind}->{next}";
            transitions[key] = transitions.GetValueOrDefault(key) + 1;
            pages[index] = Allowed(ParityPages.Of(next, random), random);
            pair.Write(index, pages[index]!.Data);
        }

        Log.AppendLine("overwritten: " + string.Join(", ", transitions.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => $"{t.Key} {t.Value}")));
        Stage(pair, "2-overwritten", Count, pages);

        // 3. A random half discarded in page-aligned runs of 1-32 pages, and pages never written.
        long discarded = 0;
        int ranges = 0;
        for (int first = 0; first < Count;)
        {
            int run = Math.Min(random.Next(1, 33), Count - first);
            if (random.Next(2) == 0)
            {
                Array.Fill(pages, null, first, run);
                pair.Discard(first, run);
                discarded += run;
                ranges++;
            }

            first += run;
        }

        pair.Discard(Count, UnwrittenDiscard);
        Log.AppendLine(CultureInfo.InvariantCulture, $"discarded {discarded} written pages in {ranges} ranges, and {UnwrittenDiscard} never written (pages {Count}-{Count + UnwrittenDiscard - 1})");
        Stage(pair, "3-discarded", Count + UnwrittenDiscard, pages);
        pair.Zramd.FlushDeferredFrees();
        Stage(pair, "3-discarded-flushed", 0, pages);

        pair.Kernel.Compact();
        long freed = pair.Zramd.Compact();
        Log.AppendLine(CultureInfo.InvariantCulture, $"zramd Compact() returned {freed} pages");
        Stage(pair, "3-compacted", Count + UnwrittenDiscard, pages);

        // 6. mem_used_max reset (echo 0 > mem_used_max: to the current mem_used_total).
        pair.Kernel.ResetMemUsedMax();
        pair.Zramd.ResetMemUsedMax();
        Stage(pair, "6-max-reset", 0, pages);

        // 6. reset: the kernel's needs disksize again afterwards; zramd's keeps it.
        pair.Kernel.Reset();
        pair.Kernel.Reinit();
        pair.Zramd.Reset();
        Array.Fill(pair.Expected, null);
        Array.Fill(pages, null);
        Stage(pair, "6-reset", Count + UnwrittenDiscard, pages);
    }

    private ParityPage Allowed(ParityPage page, Random random)
    {
        while (_outsideBand && page.Lz4Size is >= BandLow and <= BandHigh)
        {
            page = ParityPages.Of(page.Kind, random);
        }

        return page;
    }

    private void Stage(ParityPair pair, string name, int verify, ParityPage?[] pages)
    {
        ParitySnapshot snapshot = pair.Snapshot(name);
        Snapshots[name] = snapshot;
        ParityPage[] stored = pages.OfType<ParityPage>().ToArray();
        Stored[name] = stored;
        Log.Append(snapshot.Format());
        long kernelModel = ParityPages.PredictComprDataSize(stored, KernelHugeClassSize);
        long zramdModel = ParityPages.PredictComprDataSize(stored, pair.Zramd.HugeClassSize);
        Log.AppendLine(CultureInfo.InvariantCulture, $"from liblz4's lengths: compr_data_size {kernelModel} and huge_pages {ParityPages.PredictHugePages(stored, KernelHugeClassSize)} with the kernel's threshold ({KernelHugeClassSize}; the kernel's compr_data_size is {snapshot.Kernel.ComprDataSize - kernelModel:+0;-0;0} from it: its lz4 output runs a few bytes longer now and then), {zramdModel} and {ParityPages.PredictHugePages(stored, pair.Zramd.HugeClassSize)} with zramd's ({pair.Zramd.HugeClassSize})");
        if (verify > 0)
        {
            (List<long> kernel, List<long> zramd) = pair.VerifyReads(verify);
            Reads[name] = (kernel, zramd);
            Log.AppendLine(CultureInfo.InvariantCulture, $"reads of pages 0-{verify - 1}: kernel {kernel.Count} wrong, zramd {zramd.Count} wrong");
        }
    }
}

/// <summary>Runs <see cref="MixedScenario"/> once, at the first test that asks (never where the kernel's zram is unavailable).</summary>
public sealed class MixedScenarioFixture
{
    private readonly Lazy<MixedScenario> _mixed = new(() => MixedScenario.Run(outsideBand: false));
    private readonly Lazy<MixedScenario> _outsideBand = new(() => MixedScenario.Run(outsideBand: true));

    /// <summary>"mixed": pages of every length; "outside-band": none the two huge thresholds classify differently.</summary>
    internal MixedScenario Scenario(string variant) => variant switch
    {
        "mixed" => _mixed.Value,
        "outside-band" => _outsideBand.Value,
        _ => throw new ArgumentOutOfRangeException(nameof(variant), variant, null),
    };
}
