using System.Runtime.CompilerServices;

namespace ZramDaemon.Device;

/// <summary>
/// The device's blocks: one <see cref="Slot"/> per 4 KiB in one array (16 bytes each, no object per block).
/// Each slot carries its own spin lock, so requests on different slots never wait on each other; a holder
/// keeps it for one page's work at most (a decompress, or a read-modify-write's compress and store).
/// </summary>
internal sealed class SlotTable
{
    public const int SlotSize = 16;

    private readonly Slot[] _slots;

    public SlotTable(long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, Array.MaxLength);
        _slots = new Slot[count];
    }

    public int Count => _slots.Length;

    /// <summary>What the table itself costs: counted in mem_used_total (the kernel leaves its table out).</summary>
    public long Bytes => (long)_slots.Length * SlotSize;

    /// <summary>The slot, for reading and changing it while its lock is held.</summary>
    public ref Slot this[int index] => ref _slots[index];

    /// <summary>A lock-free snapshot of the slot's info (for extents and stats scans).</summary>
    public uint PeekInfo(int index) => Volatile.Read(ref _slots[index].Info);

    public ulong PeekValue(int index) => Volatile.Read(ref _slots[index].Value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Lock(int index)
    {
        ref int word = ref _slots[index].LockWord;
        if (Interlocked.CompareExchange(ref word, 1, 0) != 0)
        {
            LockContended(ref word);
        }
    }

    /// <summary>Takes the lock only if it is free: for a thread that may hold another slot's lock already.</summary>
    public bool TryLock(int index) => Interlocked.CompareExchange(ref _slots[index].LockWord, 1, 0) == 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Unlock(int index) => Volatile.Write(ref _slots[index].LockWord, 0);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void LockContended(ref int word)
    {
        // Held for a page's work (microseconds): spin, then yield; never Sleep(1), which would cost a millisecond.
        var spin = default(SpinWait);
        do
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }
        while (Volatile.Read(ref word) != 0 || Interlocked.CompareExchange(ref word, 1, 0) != 0);
    }
}
