using ZsAlloc.Native;

namespace ZsAlloc.Handles;

/// <summary>
/// The handle cells: 8 bytes per object (or stored word) in native chunks of 64K cells that never move (so a cell pointer is
/// stable and cells can be updated with a compare-and-swap). A handle names a cell; the cell holds the
/// object's current location, which compaction rewrites when it moves the object (the kernel keeps the
/// same indirection in its zs_handle slab cache). Free cells form a lock-free stack (every write takes a cell and
/// every free gives one back, so a lock here was taken twice per write); the leaf lock only guards growth.
/// </summary>
internal sealed unsafe class HandleTable : IDisposable
{
    private const int ChunkShift = 16;
    private const int ChunkCells = 1 << ChunkShift;
    private const long ChunkBytes = (long)ChunkCells * sizeof(ulong);
    private const ulong PopCountMask = 0xFFFF_FFFF_0000_0000UL;
    private const ulong PopCountOne = 1UL << 32;

    private readonly Lock _lock = new();
    private readonly ChunkList _chunks = new(ChunkBytes);
    private uint _created;

    // The free stack's head: the top cell's index + 1 (0: empty) in the low 32 bits, a count of pops in the high 32.
    // A pop that read the head, then lost the CPU while that cell was taken, freed and pushed again, sees a
    // different count and retries (the ABA problem); the cell it read meanwhile is never unmapped, so the stale
    // read is harmless.
    private long _free;
    private bool _disposed;

    /// <summary>Cells ever created (valid cell indexes are below this).</summary>
    public uint Created => Volatile.Read(ref _created);

    /// <summary>Bytes of cells in use or on the free list (untouched parts of a chunk cost no RAM).</summary>
    public long MetadataBytes => (long)Created * sizeof(ulong);

    /// <summary>The cell of an index below <see cref="Created"/>. In bounds: the chunk comes from a managed
    /// (bounds-checked) array of chunk addresses, the offset in it is masked below ChunkCells; callers pass only
    /// indexes this table handed out (ZsPool.CellOf checks against Created).</summary>
    public ulong* Cell(uint index) => (ulong*)_chunks[(int)(index >> ChunkShift)] + (index & (ChunkCells - 1));

    /// <summary>Takes a free cell (its content is the caller's to set).</summary>
    public uint Allocate()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        while (true)
        {
            long head = Volatile.Read(ref _free);
            uint topPlusOne = (uint)head;
            if (topPlusOne == 0)
            {
                return AllocateFresh();
            }

            uint index = topPlusOne - 1;
            long next = HandleCell.LocationOf(Volatile.Read(ref *Cell(index)));
            long popped = (long)(((ulong)head & PopCountMask) + PopCountOne) | next;
            if (Interlocked.CompareExchange(ref _free, popped, head) == head)
            {
                return index;
            }
        }
    }

    /// <summary>Puts a cell back on the free list.</summary>
    public void Release(uint index)
    {
        while (true)
        {
            long head = Volatile.Read(ref _free);
            Volatile.Write(ref *Cell(index), HandleCell.MakeFree((uint)head));
            if (Interlocked.CompareExchange(ref _free, (long)((ulong)head & PopCountMask) | ((long)index + 1), head) == head)
            {
                return;
            }
        }
    }

    /// <summary>A cell never used before (the free stack was empty).</summary>
    private uint AllocateFresh()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            uint fresh = _created;
            if (fresh == HandleCell.MaxCells)
            {
                throw new OutOfMemoryException("The pool has run out of handle cells.");
            }

            if ((fresh >> ChunkShift) == (uint)_chunks.Count)
            {
                _chunks.Add();
            }

            *Cell(fresh) = HandleCell.MakeFree(0);
            Volatile.Write(ref _created, fresh + 1);
            return fresh;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _chunks.Dispose();
        }
    }
}
