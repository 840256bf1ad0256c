using System.Runtime.InteropServices;

namespace ZsAlloc.ZsPages;

/// <summary>
/// Zspage descriptors by id, in native chunks of 4096 that never move, so a descriptor pointer stays valid
/// for the pool's life (a reader that raced with a free only ever pins a live or recycled descriptor, never
/// freed memory). Ids are recycled through a free list linked by <see cref="ZsPageDescriptor.Next"/>.
/// The id lock is a leaf lock.
/// </summary>
internal sealed unsafe class ZsPageTable : IDisposable
{
    private const int ChunkShift = 12;
    private const int ChunkSize = 1 << ChunkShift;

    private readonly Lock _lock = new();
    private nint[] _chunks = new nint[16];
    private int _chunkCount;
    private int _created;
    private int _freeHead = -1;
    private int _live;
    private bool _disposed;

    public int Live => Volatile.Read(ref _live);

    public long MetadataBytes => (long)Volatile.Read(ref _created) * sizeof(ZsPageDescriptor);

    /// <summary>The descriptor of an id handed out by <see cref="Allocate"/>.</summary>
    public ZsPageDescriptor* this[int id] => (ZsPageDescriptor*)Volatile.Read(ref _chunks)[id >> ChunkShift] + (id & (ChunkSize - 1));

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
                if ((id >> ChunkShift) == _chunkCount)
                {
                    AddChunk();
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
            for (int i = 0; i < _chunkCount; i++)
            {
                NativeMemory.Free((void*)_chunks[i]);
                _chunks[i] = 0;
            }
        }
    }

    private void AddChunk()
    {
        if (_chunkCount == _chunks.Length)
        {
            // Readers index the array they read; the old one keeps the same chunk pointers, so either is right.
            var bigger = new nint[_chunks.Length * 2];
            Array.Copy(_chunks, bigger, _chunkCount);
            Volatile.Write(ref _chunks, bigger);
        }

        _chunks[_chunkCount] = (nint)NativeMemory.AllocZeroed((nuint)(ChunkSize * sizeof(ZsPageDescriptor)));
        Volatile.Write(ref _chunkCount, _chunkCount + 1);
    }
}
