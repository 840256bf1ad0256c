using ZsAlloc.Native;

namespace ZsAlloc.ZsPages;

/// <summary>
/// Zspage descriptors by id, in mapped chunks of 4096 (80 KiB, whole pages) that never move or unmap while the pool
/// lives, so a descriptor pointer formed from any id ever handed out stays mapped (a stale one reads zeros or a recycled
/// descriptor, never freed memory). Ids are recycled through a free list linked by <see cref="ZsPageDescriptor.Next"/>.
/// The table's lock is a leaf lock.
///
/// Shrinking (<see cref="BeginShrink"/> .. <see cref="EndShrink"/>, run by compaction): once compaction has emptied
/// zspages all over the id range, the free ids are spread over every page of descriptors. A shrink picks a mark just
/// above the live ids, sorts the free ids by the mark, hands out only ids below it (<see cref="Allocate"/> and
/// <see cref="TakeBelowMark"/>, with which the pool renumbers each live zspage above the mark) and at the end, if no id
/// at or above the mark is still in use, cuts the table there and gives the pages of the descriptors past it back to
/// the OS. Otherwise the free ids above the mark become usable again and nothing is cut.
/// </summary>
internal sealed unsafe class ZsPageTable : IDisposable
{
    private const int ChunkShift = 12;
    private const int ChunkSize = 1 << ChunkShift;
    private const long ChunkBytes = (long)ChunkSize * Size;
    internal const int Size = 20;
    private const int PageSize = MemoryMap.PageSize;

    private readonly Lock _lock = new();
    private readonly ChunkList _chunks = new(ChunkBytes);
    private int _created;
    private int _freeHead = -1;
    private int _live;
    private bool _disposed;

    // While a shrink runs (all under _lock, as every use of the table): the mark, the free ids at or above it (kept out of use) and how many ids
    // at or above it are in use (live, or held by a zspage being created or released). _freeHead holds those below.
    private bool _shrinking;
    private int _mark;
    private int _highHead = -1;
    private int _inUseAboveMark;

    public ZsPageTable()
    {
        System.Diagnostics.Debug.Assert(sizeof(ZsPageDescriptor) == Size && ChunkBytes % PageSize == 0);
    }

    /// <summary>Ids handed out and not freed.</summary>
    public int Live => Volatile.Read(ref _live);

    /// <summary>Ids ever created and not cut: valid ids are below this.</summary>
    public int Created => Volatile.Read(ref _created);

    /// <summary>The mark of the running shrink: live zspages at or above it are to be renumbered.</summary>
    public int Mark => Volatile.Read(ref _mark);

    public long MetadataBytes => (long)Volatile.Read(ref _created) * Size;

    /// <summary>The descriptor of an id handed out by <see cref="Allocate"/>. In bounds: the chunk comes from a
    /// managed (bounds-checked) array, the offset in it is masked below ChunkSize; ids come only from this table
    /// (the page owner map and the class lists hold nothing else), and chunks are never removed.</summary>
    public ZsPageDescriptor* this[int id] => (ZsPageDescriptor*)_chunks[id >> ChunkShift] + (id & (ChunkSize - 1));

    public int Allocate()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            int id = PopFree();
            if (id < 0)
            {
                id = _created;
                if ((id >> ChunkShift) == _chunks.Count)
                {
                    _chunks.Add();
                }

                _created++;
                if (_shrinking)
                {
                    // Past the mark: this shrink cannot cut the table now (no free id was left below the mark).
                    _inUseAboveMark++;
                }
            }

            _live++;
            return id;
        }
    }

    /// <summary>A free id below the running shrink's mark, for a zspage renumbered from above it; -1 if none is left.</summary>
    public int TakeBelowMark()
    {
        lock (_lock)
        {
            int id = PopFree();
            if (id >= 0)
            {
                _live++;
            }

            return id;
        }
    }

    public void Free(int id)
    {
        lock (_lock)
        {
            this[id]->Flags = 0;
            PushFree(id);
            _live--;
        }
    }

    /// <summary>
    /// Gives back an id whose zspage was created for an object retracted at once (a write refused at the memory
    /// limit) or never finished: the newest id goes back to never created, so <see cref="MetadataBytes"/> falls by its
    /// descriptor; any other id, or any id while a shrink runs, goes on the free list as <see cref="Free"/> puts it.
    /// </summary>
    public void Retract(int id)
    {
        lock (_lock)
        {
            if (_shrinking || id + 1 != _created)
            {
                this[id]->Flags = 0;
                PushFree(id);
            }
            else
            {
                // Cleared as a never-created descriptor reads: Allocate takes it back as the newest id.
                *this[id] = default;
                Volatile.Write(ref _created, id);
            }

            _live--;
        }
    }

    /// <summary>
    /// Starts a shrink if at least <paramref name="minimumPages"/> pages of descriptors lie above the live ids (plus
    /// room for zspages created meanwhile): sorts the free ids by the mark. False: not worth it, nothing changed.
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

            // Room below the mark for every live id above it, and for 1/128 more plus a page of descriptors created meanwhile.
            long mark = (long)_live + (_live / 128) + (PageSize / Size);
            if ((((long)_created * Size) - (mark * Size)) < (long)minimumPages * PageSize)
            {
                return false;
            }

            _mark = (int)mark;
            _inUseAboveMark = _created - _mark;
            _shrinking = true;
            int free = _freeHead;
            _freeHead = -1;
            while (free >= 0)
            {
                int id = free;
                free = this[id]->Next;
                PushFree(id);
            }

            return true;
        }
    }

    /// <summary>
    /// Ends the shrink: if no id at or above the mark is in use, the table ends at the mark and the pages of the
    /// descriptors past it go back to the OS (the chunks stay mapped: a stale descriptor pointer reads zeros); otherwise
    /// the free ids above the mark become usable again. Returns the bytes of descriptors cut (the fall of
    /// <see cref="MetadataBytes"/>).
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
            if (_inUseAboveMark == 0)
            {
                _chunks.Release((long)_mark * Size, (long)_created * Size);
                released = (long)(_created - _mark) * Size;
                Volatile.Write(ref _created, _mark);
            }
            else
            {
                while (_highHead >= 0)
                {
                    int id = _highHead;
                    _highHead = this[id]->Next;
                    this[id]->Next = _freeHead;
                    _freeHead = id;
                }
            }

            _highHead = -1;
            _shrinking = false;
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

    /// <summary>Puts a free id on the free list, or while a shrink runs and it lies at or above the mark, on the list of
    /// those kept out of use. Lock held.</summary>
    private void PushFree(int id)
    {
        if (_shrinking && id >= _mark)
        {
            _inUseAboveMark--;
            this[id]->Next = _highHead;
            _highHead = id;
        }
        else
        {
            this[id]->Next = _freeHead;
            _freeHead = id;
        }
    }

    /// <summary>A free id (below the mark while a shrink runs), or -1. Lock held.</summary>
    private int PopFree()
    {
        int id = _freeHead;
        if (id >= 0)
        {
            _freeHead = this[id]->Next;
        }

        return id;
    }
}
