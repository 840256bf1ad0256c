using ZsAlloc.Native;

namespace ZsAlloc.Handles;

/// <summary>
/// The handle cells: 8 bytes per object (or stored word) in native chunks of 64K cells that never move (so a cell pointer is
/// stable and cells can be updated with a compare-and-swap). A handle names a cell; the cell holds the
/// object's current location, which compaction rewrites when it moves the object (the kernel keeps the
/// same indirection in its zs_handle slab cache). Free cells form a list under a leaf lock.
/// </summary>
internal sealed unsafe class HandleTable : IDisposable
{
    private const int ChunkShift = 16;
    private const int ChunkCells = 1 << ChunkShift;
    private const long ChunkBytes = (long)ChunkCells * sizeof(ulong);

    private readonly Lock _lock = new();
    private readonly ChunkList _chunks = new(ChunkBytes);
    private uint _created;
    private long _freeHeadPlusOne;
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
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_freeHeadPlusOne != 0)
            {
                uint index = (uint)(_freeHeadPlusOne - 1);
                ulong cell = *Cell(index);
                _freeHeadPlusOne = HandleCell.LocationOf(cell);
                return index;
            }

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

    /// <summary>Puts a cell back on the free list.</summary>
    public void Release(uint index)
    {
        lock (_lock)
        {
            Volatile.Write(ref *Cell(index), HandleCell.MakeFree(_freeHeadPlusOne));
            _freeHeadPlusOne = (long)index + 1;
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
