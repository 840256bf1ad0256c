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

    /// <summary>
    /// Gives the pages of the bytes from <paramref name="from"/> to <paramref name="end"/> (offsets into the chunks laid end
    /// to end; a partial page at either end: the one holding <paramref name="from"/> is kept, the one holding
    /// <paramref name="end"/> released) back to the OS: a table cut at <paramref name="from"/>. The chunks stay mapped, so
    /// stale readers read zeros. Caller holds the owner's lock; the range lies in chunks added.
    /// </summary>
    public void Release(long from, long end)
    {
        const int Page = MemoryMap.PageSize;
        from = (from + Page - 1) / Page * Page;
        end = (end + Page - 1) / Page * Page;
        while (from < end)
        {
            int chunk = (int)(from / _chunkBytes);
            long to = Math.Min(end, (chunk + 1) * _chunkBytes);
            // In bounds: from < to <= the end of from's chunk (chunks are whole pages), a chunk below Count.
            MemoryMap.Release(_chunks[chunk] + (nint)(from - (chunk * _chunkBytes)), to - from);
            from = to;
        }
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
