namespace ZsAlloc;

/// <summary>Pool totals, a snapshot.</summary>
public sealed record ZsPoolStats
{
    /// <summary>Pages held by zspages (zs_get_total_pages).</summary>
    public long PagesUsed { get; init; }

    public long PeakPages { get; init; }

    /// <summary>Freed pages kept resident for reuse: in the process's RSS, not in <see cref="PagesUsed"/>.</summary>
    public int PagesWarm { get; init; }

    /// <summary>Sum of the payload sizes of the live objects.</summary>
    public long BytesStored { get; init; }

    /// <summary>Payload bytes of every object allocated since the pool was created (only grows): the difference
    /// between two snapshots is what was written in between.</summary>
    public long BytesAllocated { get; init; }

    /// <summary>Live objects.</summary>
    public long Objects { get; init; }

    /// <summary>Live words (<see cref="ZsPool.StoreWord"/>): a handle cell each, no object.</summary>
    public long Words { get; init; }

    /// <summary>Handle cells the table has made (in use or free; <see cref="ZsPool.ShrinkHandles"/> cuts the free ones
    /// past the last one in use), 8 bytes each in the metadata.</summary>
    public long HandleCells { get; init; }

    /// <summary>Pages freed by compaction since the pool was created.</summary>
    public long PagesCompacted { get; init; }

    public long CompactionRuns { get; init; }

    /// <summary>Objects compaction has moved since the pool was created.</summary>
    public long ObjectsMoved { get; init; }

    public int DeferredQueueDepth { get; init; }

    /// <summary>Bytes the objects waiting in the deferred-free queue hold (their slots).</summary>
    public long DeferredQueueBytes { get; init; }

    public int DeferredQueueCapacity { get; init; }

    /// <summary>Bytes of the pool's own metadata (see <see cref="ZsPool.MetadataBytes"/>).</summary>
    public long MetadataBytes { get; init; }
}
