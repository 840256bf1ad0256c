using System.Runtime.InteropServices;
using ZsAlloc.SizeClasses;

namespace ZsAlloc.ZsPages;

/// <summary>
/// One zspage: a run of 1..16 contiguous pages holding the objects of one size class. 20 bytes in native
/// memory (the kernel's struct zspage is 56). A live zspage's fields change only under its class's lock, and so does
/// its id (<see cref="ZsPageTable"/>: compaction renumbers zspages to cut the table); readers' pins are not here
/// (<see cref="Pins.PinTable"/>), so nothing outside the class lock ever writes a live descriptor.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ZsPageDescriptor
{
    /// <summary>Global number of the first page of the run.</summary>
    public int FirstPage;

    /// <summary>Links of the class's fullness-band list (zspage ids, -1 = none).</summary>
    public int Prev;

    public int Next;

    public short InUse;

    /// <summary>First freed slot; freed slots link through their 4-byte header. -1 = none (the untouched tail may
    /// still have slots).</summary>
    public short FreeSlot;

    /// <summary>Slots handed out at least once: slots from here on are the untouched tail, taken in order once no
    /// freed slot is left.</summary>
    public short Touched;

    public byte ClassIndex;

    /// <summary>Band in the low 4 bits, flags in the high 4: the descriptor stays 20 bytes.</summary>
    private byte _bandAndFlags;

    /// <summary>In its class (from <see cref="SizeClass.Add"/> to <see cref="SizeClass.Remove"/>): only then may compaction
    /// renumber it, under the class lock (a zspage being created or released is held by its id outside the lock).</summary>
    public const byte FlagLive = 1;

    /// <summary>Taken off the band lists by compaction: allocation does not use it, frees do not move or release it.</summary>
    public const byte FlagIsolated = 2;

    /// <summary>Made from a warm run: all its pages are resident and counted from the start, untouched tail included.
    /// Otherwise its pages are zeroed ones, counted as slots are first handed out (<see cref="SizeClass.PagesOf"/>).</summary>
    public const byte FlagResident = 4;

    /// <summary>Fullness group: 0 empty, 1..10 the 10% bands (kernel ZS_INUSE_RATIO_10..99), 11 full.</summary>
    public byte Band
    {
        readonly get => (byte)(_bandAndFlags & 0x0F);
        set => _bandAndFlags = (byte)((_bandAndFlags & 0xF0) | value);
    }

    /// <summary><see cref="FlagLive"/>, <see cref="FlagIsolated"/>, <see cref="FlagResident"/>.</summary>
    public byte Flags
    {
        readonly get => (byte)(_bandAndFlags >> 4);
        set => _bandAndFlags = (byte)((_bandAndFlags & 0x0F) | (value << 4));
    }

    public readonly bool IsIsolated => (Flags & FlagIsolated) != 0;

    /// <summary>Whether it is live (in its class); read without the class lock first, so volatile: seen live, its
    /// <see cref="ClassIndex"/> (written before <see cref="MarkLive"/>) is seen too.</summary>
    public readonly bool IsLive => ((Volatile.Read(in _bandAndFlags) >> 4) & FlagLive) != 0;

    /// <summary>Sets <see cref="FlagLive"/> (class lock held), after every other field of the new zspage.</summary>
    public void MarkLive() => Volatile.Write(ref _bandAndFlags, (byte)(_bandAndFlags | (FlagLive << 4)));
}
