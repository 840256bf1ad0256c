namespace ZramDaemon.Device;

/// <summary>
/// What a write asks of the pool: an object of <see cref="Size"/> bytes, or a handle cell holding <see cref="Word"/>
/// (a same-filled page's value that does not fit in its slot). Both count against the memory limit, so both go
/// through the same room-making when it is reached.
/// </summary>
internal readonly struct PoolRequest
{
    private PoolRequest(int size, ulong word, int slot)
    {
        Size = size;
        Word = word;
        Slot = slot;
    }

    /// <summary>The object's size in bytes; 0 for a word.</summary>
    public int Size { get; }

    public ulong Word { get; }

    /// <summary>The slot the write replaces, or -1: at the limit it is written back only when no other slot can be,
    /// as its old object goes as soon as the write is done.</summary>
    public int Slot { get; }

    public bool IsWord => Size == 0;

    public static PoolRequest ForObject(int size, int slot) => new(size, 0, slot);

    public static PoolRequest ForWord(ulong word, int slot) => new(0, word, slot);
}
