using System.Reflection;
using ZsAlloc.Pages;
using ZsAlloc.SizeClasses;
using ZsAlloc.Tests.Pages;
using ZsAlloc.ZsPages;

namespace ZsAlloc.Tests.Pool;

/// <summary>
/// Checks a quiescent pool (no call running, deferred frees flushed) through its private fields: every live zspage's
/// pages owned by its id and on no free, warm or fresh list of the page source (<see cref="PageSourceInspector"/>); every
/// page of every arena either in a live zspage or listed; each class's counters (zspages, resident pages, untouched
/// slots, objects) the sums over its live zspages; the page source's PagesInUse the sum of their counted pages.
/// </summary>
internal static unsafe class ZsPoolInspector
{
    private static T Field<T>(ZsPool pool, string name) =>
        (T)typeof(ZsPool).GetField(name, BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(pool)!;

    /// <summary>A zspage's slots below Touched: objects (allocated headers) InUse of them, the rest on its free list once.</summary>
    private static void CheckSlots(PageSource pages, SizeClass cls, int id, ZsPageDescriptor* d)
    {
        Assert.True(d->InUse <= d->Touched && d->Touched <= cls.ObjectsPerZspage, $"zspage {id}: InUse {d->InUse}, Touched {d->Touched}");
        if (cls.IsHuge)
        {
            return;
        }

        long start = (long)d->FirstPage << PageSource.PageShift;
        int objects = 0;
        for (int slot = 0; slot < d->Touched; slot++)
        {
            objects += (*(uint*)pages.Address(start + ((long)slot * cls.Size)) & Handles.HandleCell.HeaderAllocated) != 0 ? 1 : 0;
        }

        Assert.True(objects == d->InUse, $"zspage {id} of class {cls.Size}: {objects} object headers, InUse {d->InUse}");
        var listed = new HashSet<int>();
        for (int slot = d->FreeSlot; slot >= 0;)
        {
            Assert.True(slot < d->Touched, $"zspage {id} of class {cls.Size}: freed slot {slot} at or past Touched {d->Touched}");
            Assert.True(listed.Add(slot), $"zspage {id} of class {cls.Size}: slot {slot} listed twice");
            uint header = *(uint*)pages.Address(start + ((long)slot * cls.Size));
            Assert.True((header & Handles.HandleCell.HeaderAllocated) == 0, $"zspage {id} of class {cls.Size}: listed slot {slot} holds an object");
            slot = Handles.HandleCell.NextSlotOf(header);
        }

        Assert.True(listed.Count == d->Touched - d->InUse, $"zspage {id} of class {cls.Size}: {listed.Count} slots listed free, {d->Touched - d->InUse} freed");
    }

    public static void Check(ZsPool pool)
    {
        PageSource pages = Field<PageSource>(pool, "_pages");
        ZsPageTable table = Field<ZsPageTable>(pool, "_zspages");
        SizeClass[] classes = Field<SizeClass[]>(pool, "_classes");
        var byIndex = classes.ToDictionary(c => c.Info.Index);
        var zspages = new Dictionary<int, int>();
        var resident = new Dictionary<int, long>();
        var untouched = new Dictionary<int, long>();
        var inUse = new Dictionary<int, long>();
        HashSet<int> seen = PageSourceInspector.Check(pages);
        long counted = 0;
        int live = 0;
        for (int id = 0; id < table.Created; id++)
        {
            ZsPageDescriptor* d = table[id];
            if (!d->IsLive)
            {
                continue;
            }

            live++;
            SizeClass cls = byIndex[d->ClassIndex];
            Assert.False(d->IsIsolated, $"zspage {id} still isolated");
            Assert.True(d->InUse > 0, $"live zspage {id} of class {cls.Size} is empty");
            for (int page = d->FirstPage; page < d->FirstPage + cls.PagesPerZspage; page++)
            {
                Assert.True(seen.Add(page), $"page {page} of zspage {id} (class {cls.Size}) is listed free/warm/fresh or in another zspage");
                Assert.True(pages.OwnerOf(page) == id, $"page {page} of zspage {id} is owned by {pages.OwnerOf(page)}");
            }

            CheckSlots(pages, cls, id, d);
            int index = d->ClassIndex;
            zspages[index] = zspages.GetValueOrDefault(index) + 1;
            resident[index] = resident.GetValueOrDefault(index) + cls.PagesOf(d);
            untouched[index] = untouched.GetValueOrDefault(index) + cls.ObjectsPerZspage - d->Touched;
            inUse[index] = inUse.GetValueOrDefault(index) + d->InUse;
            counted += cls.PagesOf(d);
        }

        foreach (SizeClass cls in classes)
        {
            int index = cls.Info.Index;
            Assert.True(zspages.GetValueOrDefault(index) == cls.Zspages, $"class {cls.Size}: {zspages.GetValueOrDefault(index)} live zspages, Zspages says {cls.Zspages}");
            Assert.True(resident.GetValueOrDefault(index) == cls.PagesResident, $"class {cls.Size}: its zspages count {resident.GetValueOrDefault(index)} pages, PagesResident says {cls.PagesResident}");
            Assert.True(untouched.GetValueOrDefault(index) == cls.UntouchedSlots, $"class {cls.Size}: {untouched.GetValueOrDefault(index)} untouched slots, UntouchedSlots says {cls.UntouchedSlots}");
            Assert.True(inUse.GetValueOrDefault(index) == cls.ObjUsed, $"class {cls.Size}: {inUse.GetValueOrDefault(index)} objects in zspages, ObjUsed says {cls.ObjUsed}");
        }

        Assert.True(counted == pages.PagesInUse, $"live zspages count {counted} pages, PagesInUse says {pages.PagesInUse}");
        Assert.True(live == table.Live, $"{live} live zspages, the table says {table.Live} ids in use");
        Assert.True(seen.Count == (long)pages.ArenaCount * PageSource.PagesPerArena,
            $"{(long)pages.ArenaCount * PageSource.PagesPerArena - seen.Count} pages of the arenas are neither in a zspage nor listed (lost)");
    }
}
