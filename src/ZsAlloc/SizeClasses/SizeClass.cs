using System.Numerics;
using ZsAlloc.ZsPages;

namespace ZsAlloc.SizeClasses;

/// <summary>
/// The live state of one merged size class: its zspages sorted into fullness groups (the kernel's
/// ZS_INUSE_RATIO_0..100: empty, ten 10% bands, full) and its counters. Partial zspages (bands 1..10) sit on
/// one doubly linked list per band so that allocation takes the fullest and compaction the emptiest in O(1).
/// Everything here is guarded by <see cref="Lock"/>. Pointers: only descriptors from <see cref="ZsPageTable"/>
/// (whose indexer is where they are bounded), by ids the table handed out; nothing here touches zspage memory.
/// </summary>
internal sealed unsafe class SizeClass
{
    public const int BandEmpty = 0;
    public const int BandFull = 11;
    public const int BandCount = 12;
    private const int None = -1;

    public readonly Lock Lock = new();
    private readonly ZsPageTable _zspages;
    private readonly int[] _bandHead = new int[BandCount];
    private readonly int[] _bandZspages = new int[BandCount];
    private int _partialMask;

    public SizeClass(SizeClassInfo info, bool isHuge, ZsPageTable zspages)
    {
        Info = info;
        IsHuge = isHuge;
        _zspages = zspages;
        Array.Fill(_bandHead, None);
    }

    public SizeClassInfo Info { get; }

    public int Size => Info.Size;

    public int ObjectsPerZspage => Info.ObjectsPerZspage;

    public int PagesPerZspage => Info.PagesPerZspage;

    /// <summary>One object per page and no header: objects at or above the huge watermark.</summary>
    public bool IsHuge { get; }

    /// <summary>Live zspages of this class (isolated ones included).</summary>
    public int Zspages { get; private set; }

    /// <summary>Objects handed out (an object in the middle of a move counts once).</summary>
    public long ObjUsed { get; set; }

    /// <summary>Sum of the payload sizes of the objects handed out.</summary>
    public long BytesStored { get; set; }

    /// <summary>Payload bytes of every object ever allocated in the class (only grows): how much is being written.</summary>
    public long BytesAllocated { get; set; }

    public long ObjAllocated => (long)Zspages * ObjectsPerZspage;

    /// <summary>Pages of this class's zspages that are written and counted (<see cref="PagesOf"/>).</summary>
    public long PagesResident { get; set; }

    public int ZspagesInBand(int band) => _bandZspages[band];

    /// <summary>
    /// Pages of a zspage that count in the pool's total: all of a warm run's (resident already); of zeroed pages,
    /// those up to the end of the last slot ever handed out (the untouched tail beyond was never written).
    /// </summary>
    public int PagesOf(ZsPageDescriptor* d) => (d->Flags & ZsPageDescriptor.FlagResident) != 0
        ? PagesPerZspage
        : PagesUpTo(d->Touched);

    /// <summary>Pages that slots 0..slots-1 reach into.</summary>
    public int PagesUpTo(int slots) => (int)((((long)slots * Size) + SizeClassTable.PageSize - 1) / SizeClassTable.PageSize);

    /// <summary>Slots of the untouched tails (<see cref="ZsPageDescriptor.Touched"/> onwards) of this class's zspages.</summary>
    public long UntouchedSlots { get; set; }

    /// <summary>
    /// zs_can_compact: pages that moving objects together would free, in whole zspages. Untouched tails do not
    /// count as wasted: compaction moves objects only into freed slots, never into a tail (that would write pages
    /// not counted yet), so what it frees is memory given back.
    /// </summary>
    public long CanCompact()
    {
        long wasted = ObjAllocated - ObjUsed - UntouchedSlots;
        return wasted <= 0 ? 0 : wasted / ObjectsPerZspage * PagesPerZspage;
    }

    public int BandOf(int inUse)
    {
        if (inUse == 0)
        {
            return BandEmpty;
        }

        if (inUse >= ObjectsPerZspage)
        {
            return BandFull;
        }

        // One object of 127 rounds to 0%; it still belongs in the first band, as in the kernel.
        return (100 * inUse / ObjectsPerZspage / 10) + 1;
    }

    /// <summary>The fullest partial zspage (allocation target), or -1.</summary>
    public int PickFullest() => _partialMask == 0 ? None : _bandHead[31 - BitOperations.LeadingZeroCount((uint)_partialMask)];

    /// <summary>The fullest partial zspage other than <paramref name="except"/>, or -1.</summary>
    public int PickFullestExcept(int except)
    {
        for (int mask = _partialMask; mask != 0;)
        {
            int band = 31 - BitOperations.LeadingZeroCount((uint)mask);
            int head = _bandHead[band];
            if (head != except)
            {
                return head;
            }

            int next = _zspages[head]->Next;
            if (next != None)
            {
                return next;
            }

            mask &= ~(1 << band);
        }

        return None;
    }

    /// <summary>
    /// The fullest partial zspage with a freed slot (compaction's destination: a moved object never takes a slot of an
    /// untouched tail, which would write a page not counted yet), or -1. Listed partial zspages without a freed slot
    /// are the tail ones, so this passes over one, rarely two, whichever bands they are in.
    /// </summary>
    public int PickFullestWithFreedSlot()
    {
        for (int mask = _partialMask; mask != 0;)
        {
            int band = 31 - BitOperations.LeadingZeroCount((uint)mask);
            for (int id = _bandHead[band]; id != None; id = _zspages[id]->Next)
            {
                if (_zspages[id]->FreeSlot >= 0)
                {
                    return id;
                }
            }

            mask &= ~(1 << band);
        }

        return None;
    }

    /// <summary>The emptiest partial zspage (compaction source), or -1.</summary>
    public int PickEmptiest() => _partialMask == 0 ? None : _bandHead[BitOperations.TrailingZeroCount(_partialMask)];

    /// <summary>The emptiest partial zspage other than <paramref name="except"/>, or -1.</summary>
    public int PickEmptiestExcept(int except)
    {
        for (int mask = _partialMask; mask != 0;)
        {
            int band = BitOperations.TrailingZeroCount(mask);
            int head = _bandHead[band];
            if (head != except)
            {
                return head;
            }

            int next = _zspages[head]->Next;
            if (next != None)
            {
                return next;
            }

            mask &= ~(1 << band);
        }

        return None;
    }

    /// <summary>
    /// The listed partial zspages with an untouched tail (<see cref="ZsPageDescriptor.Touched"/> short of the end): how
    /// many (one at most, but for a zspage a writer added while a shrink had the tail one isolated) and the first in <paramref name="tail"/>.
    /// Walks every partial zspage: for compaction, not for allocation.
    /// </summary>
    public int FindTails(out int tail)
    {
        tail = None;
        int count = 0;
        for (int band = BandEmpty + 1; band < BandFull; band++)
        {
            for (int id = _bandHead[band]; id != None; id = _zspages[id]->Next)
            {
                if (_zspages[id]->Touched < ObjectsPerZspage && count++ == 0)
                {
                    tail = id;
                }
            }
        }

        return count;
    }

    /// <summary>A zspage that just got its first object(s).</summary>
    public void Add(int id, ZsPageDescriptor* d)
    {
        int band = BandOf(d->InUse);
        d->Band = (byte)band;
        _bandZspages[band]++;
        Zspages++;
        PagesResident += PagesOf(d);
        UntouchedSlots += ObjectsPerZspage - d->Touched;
        if (!d->IsIsolated)
        {
            Link(id, d);
        }

        d->MarkLive();
    }

    /// <summary>Re-sorts a zspage after its InUse changed.</summary>
    public void UpdateBand(int id, ZsPageDescriptor* d)
    {
        int band = BandOf(d->InUse);
        if (band == d->Band)
        {
            return;
        }

        bool listed = !d->IsIsolated;
        if (listed)
        {
            Unlink(id, d);
        }

        _bandZspages[d->Band]--;
        _bandZspages[band]++;
        d->Band = (byte)band;
        if (listed)
        {
            Link(id, d);
        }
    }

    /// <summary>Takes an empty zspage out of the class before its pages are released.</summary>
    public void Remove(int id, ZsPageDescriptor* d)
    {
        if (!d->IsIsolated)
        {
            Unlink(id, d);
        }

        _bandZspages[d->Band]--;
        Zspages--;
        PagesResident -= PagesOf(d);
        UntouchedSlots -= ObjectsPerZspage - d->Touched;
        // Not live any more; FlagResident stays until the descriptor is freed: releasing the run needs PagesOf.
        d->Flags &= ZsPageDescriptor.FlagResident;
    }

    /// <summary>
    /// A live zspage of this class takes the id <paramref name="to"/> (a free one): its descriptor is copied there and
    /// its band list's links are rewritten to name it. The caller rewrites the page owner map. Class lock held; the
    /// zspage is not isolated.
    /// </summary>
    public void Renumber(ZsPageDescriptor* d, int to, ZsPageDescriptor* moved)
    {
        *moved = *d;
        if (moved->Band is not (BandEmpty or BandFull))
        {
            if (moved->Prev != None)
            {
                _zspages[moved->Prev]->Next = to;
            }
            else
            {
                _bandHead[moved->Band] = to;
            }

            if (moved->Next != None)
            {
                _zspages[moved->Next]->Prev = to;
            }
        }

        // The old id is no zspage of the class any more (the caller frees it).
        d->Flags = 0;
    }

    /// <summary>Compaction takes a source zspage off the lists so allocation does not refill it.</summary>
    public void Isolate(int id, ZsPageDescriptor* d)
    {
        Unlink(id, d);
        d->Flags |= ZsPageDescriptor.FlagIsolated;
    }

    public void PutBack(int id, ZsPageDescriptor* d)
    {
        d->Flags &= unchecked((byte)~ZsPageDescriptor.FlagIsolated);
        Link(id, d);
    }

    private void Link(int id, ZsPageDescriptor* d)
    {
        int band = d->Band;
        if (band is BandEmpty or BandFull)
        {
            return;
        }

        int head = _bandHead[band];
        d->Prev = None;
        d->Next = head;
        if (head != None)
        {
            _zspages[head]->Prev = id;
        }

        _bandHead[band] = id;
        _partialMask |= 1 << band;
    }

    private void Unlink(int id, ZsPageDescriptor* d)
    {
        int band = d->Band;
        if (band is BandEmpty or BandFull)
        {
            return;
        }

        if (d->Prev != None)
        {
            _zspages[d->Prev]->Next = d->Next;
        }
        else
        {
            _bandHead[band] = d->Next;
            if (d->Next == None)
            {
                _partialMask &= ~(1 << band);
            }
        }

        if (d->Next != None)
        {
            _zspages[d->Next]->Prev = d->Prev;
        }

        d->Prev = None;
        d->Next = None;
    }
}
