using System.Runtime.InteropServices;
using ZramDaemon.Compression;

namespace ZramDaemon.Device;

/// <summary>
/// One 4 KiB block of the device, 8 bytes (the kernel's struct zram_table_entry is 16):
/// <see cref="Value"/> is the 32-bit pool handle of the stored object, or for a same-filled page 0 (the zero
/// page) or the handle of a pool word holding the repeated 8-byte value (<see cref="ZsAlloc.ZsPool.StoreWord"/>);
/// <see cref="Info"/> packs the stored size, the flags and the slot's own lock bit (<see cref="SlotInfo"/>).
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = 8)]
internal struct Slot
{
    public uint Value;
    public uint Info;
}

/// <summary>
/// The bits of <see cref="Slot.Info"/>:
///   0..12  size of the pool object (0..4096)
///   13     <see cref="Written"/>   14 <see cref="Same"/>   15 <see cref="Huge"/>
///   16..17 the algorithm the object was compressed with (so a slot stays readable whatever the device uses later)
///   18..30 spare: kept free for issue #10 (idle bits, recompressed, dedup, written-back state)
///   31     <see cref="Locked"/>: the slot's spin lock (the kernel's ZRAM_LOCK bit), see <see cref="SlotTable"/>
/// Every value below keeps the lock bit clear; the table sets and clears it.
/// </summary>
internal static class SlotInfo
{
    public const uint SizeMask = 0x1FFF;

    /// <summary>The slot holds data (a pool object or a same-filled value). Clear: unwritten or trimmed.</summary>
    public const uint Written = 1u << 13;

    /// <summary>The page is one 8-byte value repeated: <see cref="Slot.Value"/> is 0 for zeros, else a pool word.</summary>
    public const uint Same = 1u << 14;

    /// <summary>The page did not compress below the pool's huge class size and is stored raw (4096 bytes).</summary>
    public const uint Huge = 1u << 15;

    /// <summary>Held by the thread working on the slot; only <see cref="SlotTable"/> sets and clears it.</summary>
    public const uint Locked = 1u << 31;

    private const int AlgorithmShift = 16;
    private const uint AlgorithmMask = 3u << AlgorithmShift;

    public static uint Compressed(int size, CompressionAlgorithm algorithm)
        => Written | (uint)size | ((uint)algorithm << AlgorithmShift);

    public static uint Raw() => Written | Huge | 4096;

    public static uint SameFilled() => Written | Same;

    public static int Size(uint info) => (int)(info & SizeMask);

    public static CompressionAlgorithm Algorithm(uint info) => (CompressionAlgorithm)((info & AlgorithmMask) >> AlgorithmShift);

    public static bool HasObject(uint info) => (info & (Written | Same)) == Written;

    /// <summary>A same-filled page whose value is in a pool word (non-zero value).</summary>
    public static bool HasWord(uint info, uint value) => (info & (Written | Same)) == (Written | Same) && value != 0;

    /// <summary>Reads as zeros without touching the pool: never written, trimmed, or a same-filled zero page.</summary>
    public static bool IsZero(uint info, uint value) => (info & Written) == 0 || ((info & Same) != 0 && value == 0);
}
