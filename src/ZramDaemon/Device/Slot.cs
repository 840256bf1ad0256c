using System.Runtime.InteropServices;
using ZramDaemon.Compression;

namespace ZramDaemon.Device;

/// <summary>
/// One 4 KiB block of the device, 8 bytes (the kernel's struct zram_table_entry is 16):
/// <see cref="Value"/> is the 32-bit pool handle of the stored object, or for a same-filled page 0 (the zero
/// page), the repeated value itself when its two 32-bit halves are equal (<see cref="SlotInfo.SameInSlot"/>), or else
/// the handle of a pool word holding the repeated 8-byte value (<see cref="ZsAlloc.ZsPool.StoreWord"/>);
/// for a written-back slot, the block in the backing file; <see cref="Info"/> packs the stored size, the flags
/// and the slot's own lock bit (<see cref="SlotInfo"/>).
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = 8)]
internal struct Slot
{
    public uint Value;
    public uint Info;
}

/// <summary>
/// The bits of <see cref="Slot.Info"/>:
///   0..12  size of the object (0..4096)
///   13     <see cref="Written"/>   14 <see cref="Same"/>   15 <see cref="Huge"/>
///   16..17 the algorithm the object was compressed with (so a slot stays readable whatever the device uses later;
///          3 = zstd with the device's dictionary)
///   18..19 idle age, 20 <see cref="Recompressed"/>, 21 <see cref="WrittenBack"/> (then <see cref="Slot.Value"/> is
///          the block in the backing file)
///   22     <see cref="Deduped"/>: the value is a dedup entry id
///   23     <see cref="SameInSlot"/>: a same-filled page's value is in the slot
///   24     <see cref="Incompressible"/>: a huge page recompression tried and could not shrink
///   25     <see cref="WritebackPending"/>: the slot's object is on its way to the backing file in a batch
///   26..30 spare
///   31     <see cref="Locked"/>: the slot's spin lock (the kernel's ZRAM_LOCK bit), see <see cref="SlotTable"/>
/// Every value below keeps the lock bit clear; the table sets and clears it. Info changes only under the lock.
/// </summary>
internal static class SlotInfo
{
    public const uint SizeMask = 0x1FFF;

    /// <summary>The slot holds data (a pool object or a same-filled value). Clear: unwritten or trimmed.</summary>
    public const uint Written = 1u << 13;

    /// <summary>
    /// The page is one 8-byte value repeated: <see cref="Slot.Value"/> is 0 for zeros, the value's low half with
    /// <see cref="SameInSlot"/>, else a pool word.
    /// </summary>
    public const uint Same = 1u << 14;

    /// <summary>The page did not compress below the pool's huge class size and is stored raw (4096 bytes).</summary>
    public const uint Huge = 1u << 15;

    /// <summary>Held by the thread working on the slot; only <see cref="SlotTable"/> sets and clears it.</summary>
    public const uint Locked = 1u << 31;

    private const int AlgorithmShift = 16;
    private const uint AlgorithmMask = 3u << AlgorithmShift;

    /// <summary>
    /// How many idle-marking passes found the slot untouched since it was last read or written (0..3, zram's
    /// ZRAM_IDLE widened to an age): reads and writes reset it, <see cref="IdleAgeMax"/> means idle.
    /// </summary>
    private const int IdleAgeShift = 18;
    public const uint IdleAgeMask = 3u << IdleAgeShift;
    public const uint IdleAgeMax = 3;

    /// <summary>
    /// The recompressor has dealt with the stored object (recompressed it, or found that it would not shrink),
    /// like zram's ZRAM_RECOMP / ZRAM_INCOMPRESSIBLE: not tried again until the slot is rewritten.
    /// </summary>
    public const uint Recompressed = 1u << 20;

    /// <summary>
    /// zram's ZRAM_WB: the object lives in the device's backing file, in the block <see cref="Slot.Value"/>; the
    /// size is the object's (4096: the raw page of what was a huge slot), the algorithm what it was compressed with.
    /// </summary>
    public const uint WrittenBack = 1u << 21;

    /// <summary>
    /// Same-page deduplication: <see cref="Slot.Value"/> is the id of a <see cref="Dedup.DedupIndex"/> entry, which
    /// holds the object (handle, size, algorithm) and counts the slots referring to it. No other bits but Written and
    /// the idle age.
    /// </summary>
    public const uint Deduped = 1u << 22;

    /// <summary>
    /// With <see cref="Same"/>: the repeated 8-byte value is <see cref="Slot.Value"/> twice over (all ones, a repeated
    /// 32-bit integer), so it needs no pool word. The kernel keeps any value in its slot, whose handle field has 64 bits.
    /// </summary>
    public const uint SameInSlot = 1u << 23;

    /// <summary>
    /// zram's ZRAM_INCOMPRESSIBLE: with <see cref="Recompressed"/> and <see cref="Huge"/>, a recompression tried the page
    /// (no threshold) and could not store it in less than a page either (writeback's type=incompressible). Set only once
    /// that is known: a huge slot marked <see cref="Recompressed"/> alone may be under way, or tried under a threshold.
    /// </summary>
    public const uint Incompressible = 1u << 24;

    /// <summary>
    /// The kernel's ZRAM_PP_SLOT for writeback: a batch (<see cref="Writeback.WritebackBatch"/>) copied the slot's object
    /// and is writing it to a block; the slot switches to that block afterwards only if the mark is still there. Every
    /// write, trim and replacement of the object stores fresh info without it, so a slot changed meanwhile keeps its
    /// new data and the block is given back. Idle marking and a compaction's handle move keep it (same object).
    /// </summary>
    public const uint WritebackPending = 1u << 25;

    public static uint Compressed(int size, CompressionAlgorithm algorithm)
        => Written | (uint)size | ((uint)algorithm << AlgorithmShift);

    public static uint Raw() => Written | Huge | 4096;

    public static uint SameFilled() => Written | Same;

    /// <summary>A same-filled page whose value is <see cref="Slot.Value"/> in both halves (never zero: zeros are <see cref="SameFilled"/> with value 0).</summary>
    public static uint SameFilledInSlot() => Written | Same | SameInSlot;

    public static int Size(uint info) => (int)(info & SizeMask);

    public static CompressionAlgorithm Algorithm(uint info) => (CompressionAlgorithm)((info & AlgorithmMask) >> AlgorithmShift);

    public static uint IdleAge(uint info) => (info & IdleAgeMask) >> IdleAgeShift;

    /// <summary>The info with its idle age set to <paramref name="age"/> (at most <see cref="IdleAgeMax"/>).</summary>
    public static uint WithIdleAge(uint info, uint age) => (info & ~IdleAgeMask) | (Math.Min(age, IdleAgeMax) << IdleAgeShift);

    public static bool IsIdle(uint info) => (info & IdleAgeMask) == IdleAgeMask;

    /// <summary>The slot's object in the backing file: same size and algorithm, no longer huge (it takes no pool page).</summary>
    public static uint InBackingFile(uint info) => (info & (SizeMask | AlgorithmMask | Recompressed)) | Written | WrittenBack;

    /// <summary>The slot holds a pool object (not same-filled, not written back).</summary>
    public static bool HasObject(uint info) => (info & (Written | Same | WrittenBack | Deduped)) == Written;

    public static uint DedupReference() => Written | Deduped;

    /// <summary>What idle marking ages: a slot holding a pool object of its own, or a deduplicated one.</summary>
    public static bool Ages(uint info) => HasObject(info) || IsDeduped(info);

    public static bool IsDeduped(uint info) => (info & (Written | Deduped)) == (Written | Deduped);

    public static bool IsWrittenBack(uint info) => (info & (Written | WrittenBack)) == (Written | WrittenBack);

    /// <summary>1 when the slot's object (in the pool or the backing file) was compressed with the device's dictionary.</summary>
    public static int UsesDictionary(uint info)
        => (info & (Written | Same | Deduped)) == Written && Algorithm(info) == CompressionAlgorithm.ZstdDictionary ? 1 : 0;

    /// <summary>A same-filled page whose value is in a pool word (non-zero, halves unequal).</summary>
    public static bool HasWord(uint info, uint value) => (info & (Written | Same | SameInSlot)) == (Written | Same) && value != 0;

    /// <summary>Reads as zeros without touching the pool: never written, trimmed, or a same-filled zero page.</summary>
    public static bool IsZero(uint info, uint value) => (info & Written) == 0 || ((info & (Same | SameInSlot)) == Same && value == 0);
}
