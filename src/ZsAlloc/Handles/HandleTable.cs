using System.Runtime.CompilerServices;
using ZsAlloc.Native;

namespace ZsAlloc.Handles;

/// <summary>
/// The handle cells: 8 bytes per object (or stored word) in native chunks of 64K cells that never move (so a cell pointer is
/// stable and cells can be updated with a compare-and-swap). A handle names a cell; the cell holds the
/// object's current location, which compaction rewrites when it moves the object (the kernel keeps the
/// same indirection in its zs_handle slab cache). Free cells form a lock-free stack (every write takes a cell and
/// every free gives one back, so a lock here was taken twice per write); the leaf lock only guards growth.
///
/// Shrinking (<see cref="BeginShrink"/> .. <see cref="EndShrink"/>): once half the objects are freed at random, the
/// free cells are spread over every page of the table and none can go back. A shrink picks a mark just above the
/// cells in use, closes the free stack (a sentinel head sends every Allocate and Release to the lock), hands out only
/// free cells below the mark while the owner moves its live handles above the mark to them (<see cref="ZsPool.ShrinkHandles"/>),
/// and at the end, if no cell at or above the mark is still in use, cuts the table there and gives the pages of the
/// cells past it back to the OS. Otherwise the free cells above the mark go back on the stack and nothing is cut.
/// </summary>
internal sealed unsafe class HandleTable : IDisposable
{
    private const int ChunkShift = 16;
    private const int ChunkCells = 1 << ChunkShift;
    private const long ChunkBytes = (long)ChunkCells * sizeof(ulong);
    private const ulong PopCountMask = 0xFFFF_FFFF_0000_0000UL;
    private const ulong PopCountOne = 1UL << 32;

    /// <summary>The free stack's head while a shrink runs: no cell has this index + 1 (cells stay below 2^31).</summary>
    private const uint Closed = uint.MaxValue;

    /// <summary>What <see cref="AllocateLocked"/> returns when the caller should try the stack again.</summary>
    private const uint Retry = uint.MaxValue;

    /// <summary>Cells in one OS page: the table is cut and given back in whole pages.</summary>
    private const uint CellsPerPage = MemoryMap.PageSize / sizeof(ulong);

    private readonly Lock _lock = new();
    private readonly ChunkList _chunks = new(ChunkBytes);
    private readonly uint _maxCells;
    private uint _created;

    // The free stack's head: the top cell's index + 1 (0: empty) in the low 32 bits, a count of pops in the high 32.
    // A pop that read the head, then lost the CPU while that cell was taken, freed and pushed again, sees a
    // different count and retries (the ABA problem); the cell it read meanwhile is never unmapped, so the stale
    // read is harmless.
    private long _free;
    private bool _disposed;

    // While a shrink runs (all under _lock): the mark, the free cells below it (handed out) and at or above it
    // (kept out of use), each a list linked like the stack, and how many cells at or above the mark are in use.
    private bool _shrinking;
    private uint _mark;
    private uint _lowHead;
    private uint _highHead;
    private long _inUseAboveMark;

    public HandleTable(uint maxCells = HandleCell.MaxCells)
    {
        ArgumentOutOfRangeException.ThrowIfZero(maxCells);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxCells, HandleCell.MaxCells);
        _maxCells = maxCells;
    }

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
            if (topPlusOne == 0 || topPlusOne == Closed)
            {
                uint cell = AllocateLocked();
                if (cell != Retry)
                {
                    return cell;
                }

                continue;
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

    /// <summary>
    /// Gives back a cell just taken and never handed out: the newest cell goes back to never created
    /// (<see cref="MetadataBytes"/> falls by its 8 bytes), any other on the free list. So a cell taken and given back
    /// at once, as by a write the owner's memory limit refuses, leaves the table as it was; on the free list it would
    /// keep counting, past the limit.
    /// </summary>
    public void Retract(uint index)
    {
        if (index + 1 != Volatile.Read(ref _created) || !ReleaseNewest(index))
        {
            Release(index);
        }
    }

    /// <summary>Puts a cell back on the free list.</summary>
    public void Release(uint index)
    {
        while (true)
        {
            long head = Volatile.Read(ref _free);
            if ((uint)head == Closed)
            {
                if (ReleaseWhileShrinking(index))
                {
                    return;
                }

                continue;
            }

            Volatile.Write(ref *Cell(index), HandleCell.MakeFree((uint)head));
            if (Interlocked.CompareExchange(ref _free, (long)((ulong)head & PopCountMask) | ((long)index + 1), head) == head)
            {
                return;
            }
        }
    }

    /// <summary>A cell never used before (the free stack was empty), or while a shrink runs, a free cell below the
    /// mark; <see cref="Retry"/> if the stack has cells again (a shrink ended meanwhile).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private uint AllocateLocked()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_shrinking)
            {
                if (_lowHead != 0)
                {
                    uint index = _lowHead - 1;
                    _lowHead = (uint)HandleCell.LocationOf(*Cell(index));
                    return index;
                }
            }
            else if ((uint)Volatile.Read(ref _free) != 0)
            {
                return Retry;
            }

            uint fresh = _created;
            if (fresh == _maxCells)
            {
                throw new OutOfMemoryException("The pool has run out of handle cells.");
            }

            if ((fresh >> ChunkShift) == (uint)_chunks.Count)
            {
                _chunks.Add();
            }

            *Cell(fresh) = HandleCell.MakeFree(0);
            Volatile.Write(ref _created, fresh + 1);
            if (_shrinking)
            {
                // Past the mark: this shrink cannot cut the table now (no room was left below the mark).
                _inUseAboveMark++;
            }

            return fresh;
        }
    }

    /// <summary><see cref="Retract"/>'s newest cell back to never created; false while a shrink runs or once a newer cell exists.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool ReleaseNewest(uint index)
    {
        lock (_lock)
        {
            if (_shrinking || index + 1 != _created)
            {
                return false;
            }

            Volatile.Write(ref _created, index);
            return true;
        }
    }

    /// <summary>A release that found the stack closed; false if the shrink ended meanwhile (the caller retries).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool ReleaseWhileShrinking(uint index)
    {
        lock (_lock)
        {
            if (!_shrinking)
            {
                return false;
            }

            if (index >= _mark)
            {
                _inUseAboveMark--;
                *Cell(index) = HandleCell.MakeFree(_highHead);
                _highHead = index + 1;
            }
            else
            {
                *Cell(index) = HandleCell.MakeFree(_lowHead);
                _lowHead = index + 1;
            }

            return true;
        }
    }

    /// <summary>Whether a shrink runs and this cell lies at or above its mark (its handle should move).</summary>
    public bool AboveMark(uint index) => Volatile.Read(ref _shrinking) && index >= Volatile.Read(ref _mark);

    /// <summary>
    /// Starts a shrink if at least <paramref name="minimumPages"/> pages of cells lie above the cells in use (plus
    /// a little room for writers meanwhile): closes the free stack and sorts its cells by the mark. False: not
    /// worth it, nothing changed.
    /// </summary>
    public bool BeginShrink(int minimumPages)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_shrinking)
            {
                return false;
            }

            long head;
            do
            {
                head = Volatile.Read(ref _free);
            }
            while (Interlocked.CompareExchange(ref _free, (long)(((ulong)head & PopCountMask) + PopCountOne) | Closed, head) != head);

            // Nothing else runs on the table now (every Allocate and Release waits for the lock): walk it in peace.
            uint created = _created;
            uint free = 0;
            for (uint next = (uint)head; next != 0; next = (uint)HandleCell.LocationOf(*Cell(next - 1)))
            {
                free++;
            }

            uint inUse = created - free;
            ulong mark = ((ulong)inUse + (inUse / 128) + CellsPerPage) / CellsPerPage * CellsPerPage;
            if (mark + ((ulong)minimumPages * CellsPerPage) > created)
            {
                Volatile.Write(ref _free, (long)(((ulong)head & PopCountMask) + PopCountOne) | (uint)head);
                return false;
            }

            _mark = (uint)mark;
            _lowHead = 0;
            _highHead = 0;
            _inUseAboveMark = created - _mark;
            for (uint next = (uint)head; next != 0;)
            {
                uint index = next - 1;
                next = (uint)HandleCell.LocationOf(*Cell(index));
                if (index >= _mark)
                {
                    _inUseAboveMark--;
                    *Cell(index) = HandleCell.MakeFree(_highHead);
                    _highHead = index + 1;
                }
                else
                {
                    *Cell(index) = HandleCell.MakeFree(_lowHead);
                    _lowHead = index + 1;
                }
            }

            Volatile.Write(ref _shrinking, true);
            return true;
        }
    }

    /// <summary>
    /// Ends the shrink: if no cell at or above the mark is in use, the table ends at the mark and the pages past it
    /// go back to the OS; otherwise the free cells above the mark become usable again. Reopens the free stack.
    /// Returns the bytes of cells cut (the fall of <see cref="MetadataBytes"/>).
    /// </summary>
    public long EndShrink()
    {
        lock (_lock)
        {
            if (!_shrinking)
            {
                return 0;
            }

            long released = 0;
            uint created = _created;
            if (_inUseAboveMark == 0)
            {
                // Stale readers of a cell past the mark (a pop that lost its race) still read mapped zeros.
                _chunks.Release((long)_mark * sizeof(ulong), (long)created * sizeof(ulong));

                released = (long)(created - _mark) * sizeof(ulong); // the fall of MetadataBytes
                Volatile.Write(ref _created, _mark);
            }
            else
            {
                while (_highHead != 0)
                {
                    uint index = _highHead - 1;
                    _highHead = (uint)HandleCell.LocationOf(*Cell(index));
                    *Cell(index) = HandleCell.MakeFree(_lowHead);
                    _lowHead = index + 1;
                }
            }

            _highHead = 0;
            Volatile.Write(ref _shrinking, false);
            long head = Volatile.Read(ref _free);
            Volatile.Write(ref _free, (long)(((ulong)head & PopCountMask) + PopCountOne) | _lowHead);
            _lowHead = 0;
            return released;
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
