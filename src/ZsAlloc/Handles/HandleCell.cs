namespace ZsAlloc.Handles;

/// <summary>
/// Bit layouts of handles, handle cells and object headers.
///
/// Handle (what callers hold, never 0):   tag:9 | generation:23 | cell index:32
/// Cell (8 bytes, the indirection):        allocated:1 | moving:1 | free-pending:1 | generation:23 | location:38
///   a free cell keeps allocated = 0 and holds (next free cell + 1) in place of the location.
/// Header (first 8 bytes of a non-huge object): allocated:1 | 0:18 | payload size:13 | cell index:32
///   a free slot keeps allocated = 0 and holds the next free slot (or -1) in its low 32 bits.
/// The generation advances on every free, so a stale handle whose cell was reused is still rejected;
/// the tag differs between pools, so a handle from another pool is rejected too.
/// </summary>
internal static class HandleCell
{
    public const int LocationBits = 38;
    public const ulong LocationMask = (1UL << LocationBits) - 1;
    public const int GenerationBits = 23;
    public const uint GenerationMask = (1U << GenerationBits) - 1;
    public const ulong Allocated = 1UL << 63;
    public const ulong Moving = 1UL << 62;
    public const ulong FreePending = 1UL << 61;
    public const int TagBits = 9;
    public const int MaxTag = (1 << TagBits) - 1;

    public static ulong MakeHandle(uint cell, uint generation, int tag) =>
        ((ulong)tag << (64 - TagBits)) | ((ulong)generation << 32) | cell;

    public static uint CellOf(ulong handle) => (uint)handle;

    public static uint GenerationOfHandle(ulong handle) => (uint)(handle >> 32) & GenerationMask;

    public static int TagOf(ulong handle) => (int)(handle >> (64 - TagBits));

    public static ulong MakeAllocated(uint generation, long location) =>
        Allocated | ((ulong)generation << LocationBits) | (ulong)location;

    public static ulong MakeFree(uint generation, long nextFreePlusOne) =>
        ((ulong)generation << LocationBits) | (ulong)nextFreePlusOne;

    public static uint GenerationOf(ulong cell) => (uint)(cell >> LocationBits) & GenerationMask;

    public static long LocationOf(ulong cell) => (long)(cell & LocationMask);

    public static ulong WithLocation(ulong cell, long location) => (cell & ~LocationMask) | (ulong)location;

    public static uint NextGeneration(uint generation) => (generation + 1) & GenerationMask;

    public const ulong HeaderAllocated = 1UL << 63;

    public static ulong MakeHeader(uint cell, int size) => HeaderAllocated | ((ulong)(uint)size << 32) | cell;

    public static int SizeOfHeader(ulong header) => (int)(header >> 32) & 0x1FFF;

    public static uint CellOfHeader(ulong header) => (uint)header;

    public static ulong MakeFreeSlot(int nextSlot) => (uint)nextSlot;

    public static int NextSlotOf(ulong freeSlot) => (int)(uint)freeSlot;
}
