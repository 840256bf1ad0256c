namespace ZramDaemon.Device.Writeback;

/// <summary>
/// Slots on their way to the backing file together (the writeback runs of <see cref="ZramDevice"/>): each object is
/// copied here under its slot's lock and the slot marked <see cref="SlotInfo.WritebackPending"/>; then all are written
/// with one wait (<see cref="BackingFile.WriteBlocks"/>), and each slot still marked takes its block. A wait per page
/// held writeback to the disk's round trip (about 3,400 pages/s on this project's machines, against 16,000 unwaited).
/// A device has one, used under its lock only, so that a mark is never another batch's.
/// </summary>
internal sealed class WritebackBatch
{
    public const int Capacity = 32;

    private readonly int[] _slots = new int[Capacity];
    private readonly long[] _blocks = new long[Capacity];
    private readonly int[] _sizes = new int[Capacity];
    private readonly long[] _windows = new long[Capacity];
    private readonly byte[] _data = new byte[Capacity * BackingFile.BlockSize];
    private readonly bool[] _failed = new bool[Capacity];

    /// <summary>Slots staged.</summary>
    public int Count { get; private set; }

    /// <summary>The bytes of the objects staged (what the pool frees once they are written back).</summary>
    public long Bytes { get; private set; }

    public bool IsFull => Count == Capacity;

    /// <summary>Where the next object is copied to.</summary>
    public Span<byte> Next => _data.AsSpan(Count * BackingFile.BlockSize, BackingFile.BlockSize);

    public ReadOnlySpan<long> Blocks => _blocks.AsSpan(0, Count);

    public ReadOnlySpan<int> Sizes => _sizes.AsSpan(0, Count);

    public ReadOnlySpan<byte> Data => _data.AsSpan(0, Count * BackingFile.BlockSize);

    /// <summary>Which blocks the write failed (<see cref="BackingFile.WriteBlocks"/> fills it).</summary>
    public Span<bool> Failed => _failed.AsSpan(0, Count);

    public int Slot(int i) => _slots[i];

    public long Block(int i) => _blocks[i];

    public int Size(int i) => _sizes[i];

    /// <summary>The daily budget's window the page of entry <paramref name="i"/> was taken from (<see cref="BackingFile.ReturnBudget"/>).</summary>
    public long Window(int i) => _windows[i];

    /// <summary>Takes the object just copied to <see cref="Next"/>: <paramref name="size"/> bytes of slot <paramref name="slot"/>, for
    /// <paramref name="block"/>, with a page of the daily budget from <paramref name="window"/>.</summary>
    public void Add(int slot, long block, int size, long window)
    {
        _slots[Count] = slot;
        _blocks[Count] = block;
        _sizes[Count] = size;
        _windows[Count] = window;
        _failed[Count] = false;
        Bytes += size;
        Count++;
    }

    /// <summary>Forgets the last slot staged (settled: <see cref="Slot"/>, <see cref="Block"/>, <see cref="Size"/> and
    /// <see cref="Window"/> of it stay readable until the next <see cref="Add"/>).</summary>
    public void Drop()
    {
        Count--;
        Bytes -= _sizes[Count];
    }

    public void Clear()
    {
        Count = 0;
        Bytes = 0;
    }
}
