using System.Diagnostics;
using ZsAlloc.Native;
using ZsAlloc.Pages;

namespace ZsAlloc.Pins;

/// <summary>
/// The pins of readers and writers inside an object: a fixed array of 4096 counters (16 KiB) that lives as long as
/// the pool and is never given back, indexed by the page the object starts in. Compaction, once it has claimed an
/// object (its cell marked Moving), waits for that object's counter to reach 0 before it copies it, as the kernel's
/// migrate_write_lock waits for readers; a reader increments the counter and then reads the cell again.
///
/// The counters belong to pages, not to zspages: a zspage's descriptor can then be renumbered and its old descriptor
/// page given back (<see cref="ZsPool.Compact"/>) while a reader holds a pin or a late one drops its pin, since the
/// counter it touches is neither in a descriptor nor ever released. Pages share counters (page number hashed into
/// 4096), which only ever makes compaction wait for a reader of another object: a pin is held for the copy of one
/// object, and compaction gives up on a class after about 2 ms anyway. Neighbouring pages go to different cache lines,
/// so readers of nearby objects on two CPUs do not share one.
/// </summary>
internal sealed unsafe class PinTable : IDisposable
{
    private const int CountShift = 12;
    private const int Count = 1 << CountShift;

    /// <summary>Counters in one 64-byte cache line.</summary>
    private const int LineShift = 4;

    private readonly nint _counters = MemoryMap.Map((long)Count * sizeof(int));
    private int _disposed;

    /// <summary>Bytes of counters: all of them are resident soon enough, so all of them count.</summary>
    public static long MetadataBytes => (long)Count * sizeof(int);

    /// <summary>The counter for an object at <paramref name="location"/> (global byte offset). In bounds: the index is
    /// masked below Count.</summary>
    public int* For(long location)
    {
        int page = (int)(location >> PageSource.PageShift);
        // Page p goes to line p mod 256, slot (p / 256) mod 16: consecutive pages land on consecutive lines.
        int index = ((page << LineShift) | ((page >> (CountShift - LineShift)) & ((1 << LineShift) - 1))) & (Count - 1);
        return (int*)_counters + index;
    }

    /// <summary>Waits until nobody holds the pin; false if that takes longer than about 2 ms.</summary>
    public static bool WaitForZero(int* pin)
    {
        if (Volatile.Read(ref *pin) == 0)
        {
            return true;
        }

        long deadline = Stopwatch.GetTimestamp() + (Stopwatch.Frequency / 500);
        var spin = default(SpinWait);
        while (Volatile.Read(ref *pin) != 0)
        {
            if (Stopwatch.GetTimestamp() > deadline)
            {
                return false;
            }

            spin.SpinOnce(sleep1Threshold: -1);
        }

        return true;
    }

    /// <summary>Pins held now, summed over every counter: 0 whenever nobody is inside an object (a check for tests).</summary>
    public long Held()
    {
        long sum = 0;
        for (int i = 0; i < Count; i++)
        {
            // In bounds: i < Count counters mapped.
            sum += Volatile.Read(ref ((int*)_counters)[i]);
        }

        return sum;
    }

    /// <summary>Unmaps the counters. Only when nobody can pin any more (the pool is being disposed).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            MemoryMap.Unmap(_counters, (long)Count * sizeof(int));
        }
    }
}
