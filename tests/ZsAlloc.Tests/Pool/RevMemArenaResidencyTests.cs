using System.Reflection;
using System.Runtime.InteropServices;
using Xunit.Abstractions;
using ZsAlloc.Pages;

namespace ZsAlloc.Tests.Pool;

/// <summary>
/// Review (memory): what the pool's arenas hold resident, page by page (mincore(2) over every mapped arena), against
/// what it counts: <see cref="ZsPool.TotalPages"/> (the pool pages of mem_used_total) plus the warm pages
/// (<see cref="ZsPoolStats.PagesWarm"/>, resident on purpose and released when idle or at compaction). docs/zsalloc.md:
/// a zspage's pages count as they are first written, a freed run goes back to the OS (MADV_DONTNEED) or stays warm,
/// compaction gives back whole zspages and the tails it gathers. A page resident in an arena that neither counts nor
/// is warm is memory the device holds and mem_used_total does not show; a counted page that is not resident is a count
/// that says more than is held. Exact, so no margin for other tests' noise: only the arenas are looked at.
/// </summary>
public sealed unsafe partial class RevMemArenaResidencyTests(ITestOutputHelper output)
{
    [LibraryImport("libc", EntryPoint = "mincore", SetLastError = true)]
    private static partial int MinCore(nint address, nuint length, byte* vector);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Resident_arena_pages_are_the_counted_pages_plus_the_warm_ones_through_fills_frees_and_compactions(int seed)
    {
        var random = new Random(seed);
        using var pool = new ZsPool();
        var live = new List<uint>();

        int Size(int phase) => random.Next(10) switch
        {
            0 => 4096, // huge: a page of its own
            1 => random.Next(3837, 4096),
            _ => phase == 0 ? random.Next(32, 2200) : random.Next(1200, 3600),
        };

        void Fill(int count, int phase)
        {
            for (int i = 0; i < count; i++)
            {
                int size = Size(phase);
                uint handle = pool.Malloc(size);
                pool.Write(handle, TestPattern.Slice(live.Count + i, size));
                live.Add(handle);
            }
        }

        void FreeFraction(int percent, bool deferred)
        {
            for (int i = live.Count - 1; i >= 0; i--)
            {
                if (random.Next(100) < percent)
                {
                    if (deferred)
                    {
                        pool.FreeDeferred(live[i]);
                    }
                    else
                    {
                        pool.Free(live[i]);
                    }

                    live[i] = live[^1];
                    live.RemoveAt(live.Count - 1);
                }
            }

            pool.FlushDeferred();
        }

        Fill(40_000, 0);
        Check(pool, "filled");
        FreeFraction(50, deferred: false);
        Check(pool, "half freed");
        pool.Compact();
        Check(pool, "compacted");
        Fill(30_000, 1); // another mix of sizes
        Check(pool, "refilled with larger objects");
        FreeFraction(70, deferred: true);
        Check(pool, "70% freed (deferred)");
        pool.ReleaseWarmIfUnused();
        pool.ReleaseWarmIfUnused();
        Check(pool, "idle twice");
        pool.Compact();
        Check(pool, "compacted again");
        Fill(20_000, 0);
        FreeFraction(100, deferred: true);
        pool.Compact();
        Check(pool, "everything freed and compacted");
    }

    private void Check(ZsPool pool, string when)
    {
        ZsPoolStats stats = pool.GetStats();
        long resident = ResidentArenaPages(pool, out int arenas);
        long counted = pool.TotalPages;
        long warm = stats.PagesWarm;
        output.WriteLine($"{when}: {arenas} arenas, {resident} pages resident, {counted} counted, {warm} warm");
        Assert.True(resident <= counted + warm,
            $"{when}: {resident} arena pages resident, but only {counted} counted in TotalPages and {warm} warm: "
            + $"{resident - counted - warm} pages ({(resident - counted - warm) * 4} KiB) held and counted nowhere");
        Assert.True(resident >= counted,
            $"{when}: TotalPages counts {counted} pages but only {resident} are resident in the arenas");
    }

    private static long ResidentArenaPages(ZsPool pool, out int arenas)
    {
        var pages = (PageSource)typeof(ZsPool).GetField("_pages", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(pool)!;
        var bases = (nint[])typeof(PageSource).GetField("_arenaBase", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(pages)!;
        var owners = (int[]?[])typeof(PageSource).GetField("_owners", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(pages)!;
        var vector = new byte[PageSource.PagesPerArena];
        long resident = 0;
        arenas = 0;
        for (int arena = 0; arena < bases.Length; arena++)
        {
            if (bases[arena] == 0 || owners[arena] is null)
            {
                continue;
            }

            arenas++;
            fixed (byte* v = vector)
            {
                Assert.True(MinCore(bases[arena], (nuint)PageSource.ArenaBytes, v) == 0, $"mincore of arena {arena}: errno {Marshal.GetLastPInvokeError()}");
            }

            foreach (byte b in vector)
            {
                resident += b & 1;
            }
        }

        return resident;
    }
}
