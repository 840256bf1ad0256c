using System.Runtime.InteropServices;
using ZsAlloc.SizeClasses;

namespace ZsAlloc.ZsPages;

/// <summary>
/// One zspage: a run of 1..16 contiguous pages holding the objects of one size class. 24 bytes in native
/// memory (the kernel's struct zspage is 56). Fields other than <see cref="Pins"/> change only under
/// the owning class's lock.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ZsPageDescriptor
{
    /// <summary>Global number of the first page of the run.</summary>
    public int FirstPage;

    /// <summary>Readers and writers inside an object of this zspage right now (Interlocked). Compaction
    /// waits for 0 before it copies an object out, as the kernel's migrate_write_lock waits for readers.</summary>
    public int Pins;

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

    /// <summary>Band in the low 4 bits, flags in the high 4: the descriptor stays 24 bytes.</summary>
    private byte _bandAndFlags;

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
}
