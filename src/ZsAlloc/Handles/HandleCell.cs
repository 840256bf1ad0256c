namespace ZsAlloc.Handles;

/// <summary>
/// Bit layouts of handles, handle cells and object headers.
///
/// Handle (what callers hold, 32 bits, never 0): cell index + 1.
/// Cell (8 bytes, the indirection):   allocated:1 | moving:1 | free-pending:1 | 0:11 | payload size:13 | location:38
///   a free cell keeps allocated = 0 and holds (next free cell + 1) in place of the location.
///   A word cell (<see cref="ZsPool.StoreWord"/>) holds the caller's 8-byte value itself; the pool never reads it.
/// Header (first 4 bytes of a non-huge object): allocated:1 | cell index:31
///   a freed slot keeps allocated = 0 and holds (next freed slot + 1), 0 ending the list. Slots never handed out
///   (a zspage's untouched tail, ZsPageDescriptor.Touched onwards) have no header.
/// The payload size lives in the cell, not the header: compaction only needs the owner (to rewrite its cell),
/// and the cell is read anyway by everyone who reaches the object. A handle carries no generation (there is no
/// room in 32 bits): a freed handle is refused until its cell is reused, as in the kernel, which checks nothing.
/// </summary>
internal static class HandleCell
{
    public const int LocationBits = 38;
    public const ulong LocationMask = (1UL << LocationBits) - 1;
    public const int SizeShift = LocationBits;
    public const ulong SizeMask = 0x1FFFUL << SizeShift;
    public const ulong Allocated = 1UL << 63;
    public const ulong Moving = 1UL << 62;
    public const ulong FreePending = 1UL << 61;

    /// <summary>Cell indexes fit the header's 31 bits.</summary>
    public const uint MaxCells = 1U << 31;

    public const uint HeaderAllocated = 1U << 31;
    public const uint HeaderCellMask = HeaderAllocated - 1;

    public static uint MakeHandle(uint cell) => cell + 1;

    public static uint CellOf(uint handle) => handle - 1;

    public static ulong MakeAllocated(int size, long location) =>
        Allocated | ((ulong)(uint)size << SizeShift) | (ulong)location;

    public static ulong MakeFree(long nextFreePlusOne) => (ulong)nextFreePlusOne;

    public static long LocationOf(ulong cell) => (long)(cell & LocationMask);

    public static int SizeOf(ulong cell) => (int)((cell & SizeMask) >> SizeShift);

    public static ulong WithLocation(ulong cell, long location) => (cell & ~LocationMask) | (ulong)location;

    public static uint MakeHeader(uint cell) => HeaderAllocated | cell;

    public static uint CellOfHeader(uint header) => header & HeaderCellMask;

    public static uint MakeFreeSlot(int nextSlot) => (uint)(nextSlot + 1);

    public static int NextSlotOf(uint freeSlot) => (int)freeSlot - 1;
}
