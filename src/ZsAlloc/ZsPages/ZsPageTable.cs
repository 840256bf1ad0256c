using ZsAlloc.Native;

namespace ZsAlloc.ZsPages;

/// <summary>
/// Zspage descriptors by id, in mapped chunks of 4096 that never move, so a descriptor pointer stays valid
/// for the pool's life (a reader that raced with a free only ever pins a live or recycled descriptor, never
/// freed memory). Ids are recycled through a free list linked by <see cref="ZsPageDescriptor.Next"/>.
/// The id lock is a leaf lock.
/// </summary>
internal sealed unsafe class ZsPageTable : IDisposable
{
    private const int ChunkShift = 12;
    private const int ChunkSize = 1 << ChunkShift;

    private readonly Lock _lock = new();
    private readonly ChunkList _chunks = new((long)ChunkSize * sizeof(ZsPageDescriptor));
    private int _created;
    private int _freeHead = -1;
    private int _live;
    private bool _disposed;

    public int Live => Volatile.Read(ref _live);

    public long MetadataBytes => (long)Volatile.Read(ref _created) * sizeof(ZsPageDescriptor);

    /// <summary>The descriptor of an id handed out by <see cref="Allocate"/>. In bounds: the chunk comes from a
    /// managed (bounds-checked) array, the offset in it is masked below ChunkSize; ids come only from this table
    /// (the page owner map and the class lists hold nothing else).</summary>
    public ZsPageDescriptor* this[int id] => (ZsPageDescriptor*)_chunks[id >> ChunkShift] + (id & (ChunkSize - 1));

    public int Allocate()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            int id = _freeHead;
            if (id >= 0)
            {
                _freeHead = this[id]->Next;
            }
            else
            {
                id = _created;
                if ((id >> ChunkShift) == _chunks.Count)
                {
                    _chunks.Add();
                }

                _created++;
            }

            _live++;
            return id;
        }
    }

    public void Free(int id)
    {
        lock (_lock)
        {
            ZsPageDescriptor* d = this[id];
            d->Flags = 0;
            d->Next = _freeHead;
            _freeHead = id;
            _live--;
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
