using System.Runtime.InteropServices;

namespace ZsAlloc.ZsPages;

/// <summary>
/// One zspage: a run of 1..16 contiguous pages holding the objects of one size class. 24 bytes in native
/// memory (the kernel's struct zspage is about as big). Fields other than <see cref="Pins"/> change only under
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

    /// <summary>First free slot; free slots link through their 4-byte header. -1 = full.</summary>
    public short FreeSlot;

    public byte ClassIndex;

    /// <summary>Fullness group: 0 empty, 1..10 the 10% bands (kernel ZS_INUSE_RATIO_10..99), 11 full.</summary>
    public byte Band;

    public byte Flags;

    private readonly byte _reserved;

    public const byte FlagLive = 1;

    /// <summary>Taken off the band lists by compaction: allocation does not use it, frees do not move or release it.</summary>
    public const byte FlagIsolated = 2;

    public readonly bool IsIsolated => (Flags & FlagIsolated) != 0;
}
