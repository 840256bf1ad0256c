namespace ZsAlloc.Native;

/// <summary>
/// Equal-sized chunks of mapped memory that never move once added, so pointers into them stay valid for the
/// owner's life (handle cells, zspage descriptors). Adding is done under the owner's lock; readers index
/// without one: the chunk array is replaced, never changed in place, when it grows.
/// </summary>
internal sealed class ChunkList : IDisposable
{
    private readonly long _chunkBytes;
    private nint[] _chunks = new nint[4];
    private int _count;

    public ChunkList(long chunkBytes) => _chunkBytes = chunkBytes;

    public int Count => Volatile.Read(ref _count);

    /// <summary>The address of chunk <paramref name="index"/> (below <see cref="Count"/>).</summary>
    public nint this[int index] => Volatile.Read(ref _chunks)[index];

    /// <summary>Maps one more chunk (zero-filled, resident only where touched). Caller holds the owner's lock.</summary>
    public void Add()
    {
        if (_count == _chunks.Length)
        {
            var bigger = new nint[_chunks.Length * 2];
            Array.Copy(_chunks, bigger, _count);
            Volatile.Write(ref _chunks, bigger);
        }

        _chunks[_count] = MemoryMap.Map(_chunkBytes);
        Volatile.Write(ref _count, _count + 1);
    }

    /// <summary>Unmaps every chunk. Caller holds the owner's lock and nobody uses the chunks any more.</summary>
    public void Dispose()
    {
        for (int i = 0; i < _count; i++)
        {
            MemoryMap.Unmap(_chunks[i], _chunkBytes);
            _chunks[i] = 0;
        }

        _count = 0;
    }
}
