using System.Runtime.CompilerServices;

namespace ZramDaemon.Device;

/// <summary>
/// The device's blocks: one <see cref="Slot"/> per 4 KiB in one array (8 bytes each, no object per block).
/// Each slot carries its own spin lock (<see cref="SlotInfo.Locked"/>, a bit of its info word), so requests on
/// different slots never wait on each other; a holder keeps it for one page's work at most (a decompress, or a
/// read-modify-write's compress and store). Only the holder changes a slot, through <see cref="Set"/>, which
/// keeps the lock bit; lock-free readers (<see cref="PeekInfo"/>, <see cref="Peek"/>) see the info without it.
/// Set writes value and info in one 8-byte store and Peek reads them in one load, so a lock-free reader never sees
/// one slot's new value with its old info (a same-filled page's word handle replaced by dedup entry 0 looked like
/// the zero page to BLOCK_STATUS, and a structured read sent it as a hole).
/// </summary>
internal sealed class SlotTable
{
    public const int SlotSize = 8;

    private readonly Slot[] _slots;

    public SlotTable(long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, Array.MaxLength);
        try
        {
            _slots = new Slot[count];
        }
        catch (OutOfMemoryException e)
        {
            throw new SlotTableTooLargeException(count * SlotSize, e);
        }
    }

    public int Count => _slots.Length;

    /// <summary>What the table itself costs: counted in mem_used_total (the kernel leaves its table out).</summary>
    public long Bytes => (long)_slots.Length * SlotSize;

    /// <summary>The slot's value; its lock is held.</summary>
    public uint Value(int index) => _slots[index].Value;

    /// <summary>The slot's info (without the lock bit); its lock is held.</summary>
    public uint Info(int index) => _slots[index].Info & ~SlotInfo.Locked;

    /// <summary>Changes the slot; its lock is held and stays held.</summary>
    public void Set(int index, uint value, uint info)
        => Volatile.Write(ref Unsafe.As<Slot, ulong>(ref _slots[index]), ((ulong)(info | SlotInfo.Locked) << 32) | value);

    /// <summary>Changes only the slot's info (idle age, recompressed); its lock is held and stays held.</summary>
    public void SetInfo(int index, uint info) => Volatile.Write(ref _slots[index].Info, info | SlotInfo.Locked);

    /// <summary>
    /// Empties the slot (unwritten again) and returns what it held: what Lock, Set(index, 0, 0), Unlock do, in one
    /// compare-and-swap of the whole 8-byte slot when it is not locked (a discarded range does this for every slot).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Take(int index, out uint value, out uint info)
    {
        ref ulong word = ref Unsafe.As<Slot, ulong>(ref _slots[index]);
        ulong slot = Volatile.Read(ref word);
        if ((slot & LockedInSlot) == 0 && Interlocked.CompareExchange(ref word, 0, slot) == slot)
        {
            value = (uint)slot;
            info = (uint)(slot >> 32);
            return;
        }

        Lock(index);
        value = Value(index);
        info = Info(index);
        Set(index, 0, 0);
        Unlock(index);
    }

    /// <summary>The lock bit where it sits in the slot read as one little-endian 8-byte word (Info is the high half).</summary>
    private const ulong LockedInSlot = (ulong)SlotInfo.Locked << 32;

    /// <summary>A lock-free snapshot of the slot's info, without the lock bit (for extents and stats scans).</summary>
    public uint PeekInfo(int index) => Volatile.Read(ref _slots[index].Info) & ~SlotInfo.Locked;

    /// <summary>A lock-free snapshot of the whole slot, value and info (without the lock bit) as one holder left them.</summary>
    public void Peek(int index, out uint value, out uint info)
    {
        ulong slot = Volatile.Read(ref Unsafe.As<Slot, ulong>(ref _slots[index]));
        value = (uint)slot;
        info = (uint)(slot >> 32) & ~SlotInfo.Locked;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Lock(int index)
    {
        ref uint word = ref _slots[index].Info;
        uint info = Volatile.Read(ref word);
        if ((info & SlotInfo.Locked) != 0 || Interlocked.CompareExchange(ref word, info | SlotInfo.Locked, info) != info)
        {
            LockContended(ref word);
        }
    }

    /// <summary>Takes the lock only if it is free: for a thread that may hold another slot's lock already.</summary>
    public bool TryLock(int index)
    {
        ref uint word = ref _slots[index].Info;
        uint info = Volatile.Read(ref word);
        return (info & SlotInfo.Locked) == 0 && Interlocked.CompareExchange(ref word, info | SlotInfo.Locked, info) == info;
    }

    /// <summary>Only the holder writes the info word while the bit is set, so a plain store releases it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Unlock(int index)
    {
        ref uint word = ref _slots[index].Info;
        Volatile.Write(ref word, word & ~SlotInfo.Locked);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void LockContended(ref uint word)
    {
        // Held for a page's work (microseconds): spin, then yield; never Sleep(1), which would cost a millisecond.
        var spin = default(SpinWait);
        while (true)
        {
            spin.SpinOnce(sleep1Threshold: -1);
            uint info = Volatile.Read(ref word);
            if ((info & SlotInfo.Locked) == 0 && Interlocked.CompareExchange(ref word, info | SlotInfo.Locked, info) == info)
            {
                return;
            }
        }
    }
}
