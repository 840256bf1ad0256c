namespace ZramDaemon.Device;

/// <summary>
/// What a write asks of the pool: an object of <see cref="Size"/> bytes, or a handle cell holding <see cref="Word"/>
/// (a same-filled page's value that does not fit in its slot). Both count against the memory limit, so both go
/// through the same room-making when it is reached.
/// </summary>
internal readonly struct PoolRequest
{
    private PoolRequest(int size, ulong word)
    {
        Size = size;
        Word = word;
    }

    /// <summary>The object's size in bytes; 0 for a word.</summary>
    public int Size { get; }

    public ulong Word { get; }

    public bool IsWord => Size == 0;

    public static PoolRequest ForObject(int size) => new(size, 0);

    public static PoolRequest ForWord(ulong word) => new(0, word);
}
