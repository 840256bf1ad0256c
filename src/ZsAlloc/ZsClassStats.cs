using System.Globalization;
using System.Text;

namespace ZsAlloc;

/// <summary>One row of the kernel's debugfs <c>zsmalloc/&lt;pool&gt;/classes</c> file.</summary>
public sealed record ZsClassStats
{
    /// <summary>The kernel's class index: (size - 32) / 16, so merged classes leave gaps as in debugfs.</summary>
    public int Class { get; init; }

    /// <summary>Slot size of the class, header included.</summary>
    public int Size { get; init; }

    /// <summary>Zspages per fullness group: [0] empty, [1..10] the bands 10%, 20%, ..., 90%, 99%, [11] full (100%).</summary>
    public IReadOnlyList<int> ZspagesByFullness { get; init; } = [];

    public long ObjAllocated { get; init; }

    public long ObjUsed { get; init; }

    /// <summary>Pages of the class's zspages (zspages x pages per zspage), as the kernel counts them.</summary>
    public long PagesUsed { get; init; }

    /// <summary>Of <see cref="PagesUsed"/>, the pages written and counted in the pool's total: a zspage's untouched
    /// tail (slots never handed out) costs nothing until it is used.</summary>
    public long PagesResident { get; init; }

    public int PagesPerZspage { get; init; }

    /// <summary>Of <see cref="ObjAllocated"/>, the slots of untouched tails (never handed out, or given back by
    /// compaction): free without costing pages. The rest of the free slots, ObjAllocated - ObjUsed - ObjUntouched,
    /// are freed slots inside written pages.</summary>
    public long ObjUntouched { get; init; }

    /// <summary>Pages compaction could free in this class now (zs_can_compact).</summary>
    public long Freeable { get; init; }

    /// <summary>The debugfs header line (the kernel's format strings start with a space).</summary>
    public const string Header =
        " class  size       10%       20%       30%       40%       50%       60%       70%       80%       90%       99%      100% obj_allocated   obj_used pages_used pages_per_zspage freeable";

    /// <summary>Formats the row the way the kernel's zs_stats_size_show does.</summary>
    public override string ToString()
    {
        var line = new StringBuilder();
        line.Append(CultureInfo.InvariantCulture, $" {Class,5} {Size,5} ");
        for (int band = 1; band < ZspagesByFullness.Count; band++)
        {
            line.Append(CultureInfo.InvariantCulture, $"{ZspagesByFullness[band],9} ");
        }

        line.Append(CultureInfo.InvariantCulture, $"{ObjAllocated,13} {ObjUsed,10} {PagesUsed,10} {PagesPerZspage,16} {Freeable,8}");
        return line.ToString();
    }

    /// <summary>The kernel's last line, after a blank one: " Total", the bands' and the object, page and freeable
    /// totals, pages_per_zspage left blank.</summary>
    public static string FormatTotal(IReadOnlyList<ZsClassStats> classes)
    {
        ArgumentNullException.ThrowIfNull(classes);
        var line = new StringBuilder();
        line.Append(CultureInfo.InvariantCulture, $" {"Total",5} {string.Empty,5} ");
        int bands = classes.Count == 0 ? 12 : classes[0].ZspagesByFullness.Count;
        for (int band = 1; band < bands; band++)
        {
            line.Append(CultureInfo.InvariantCulture, $"{classes.Sum(c => band < c.ZspagesByFullness.Count ? (long)c.ZspagesByFullness[band] : 0),9} ");
        }

        line.Append(CultureInfo.InvariantCulture,
            $"{classes.Sum(c => c.ObjAllocated),13} {classes.Sum(c => c.ObjUsed),10} {classes.Sum(c => c.PagesUsed),10} {string.Empty,16} {classes.Sum(c => c.Freeable),8}");
        return line.ToString();
    }
}
