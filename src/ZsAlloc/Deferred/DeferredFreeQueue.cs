using ZsAlloc.Native;
using ZsAlloc.Pages;

namespace ZsAlloc.Deferred;

/// <summary>
/// zs_free_deferred (the seed patch): a bounded array of handles whose free is postponed. Enqueueing takes the
/// queue lock with a try-lock only; if it is contended (a drain is in progress) or the queue is full, the
/// caller frees synchronously instead, so a handle is never dropped. The queue is bounded by handles and by the
/// bytes the queued objects still hold (<see cref="ByteBudget"/>, set by the pool's owner from its memory limit),
/// so that garbage waiting here can never hold more than the budget whatever the scheduler does; past either
/// bound frees are synchronous. The handle bound depends on the kind of free: a discarded range comes as one
/// batch (<see cref="Enqueue(ReadOnlySpan{uint}, ReadOnlySpan{int})"/>), a burst that may fill the whole capacity
/// (sized by the owner so that a whole-device discard fits: entries cost address space until written); a single
/// free (<see cref="TryEnqueue"/>: an overwritten object) is queued only below <see cref="SingleFreeLimit"/> handles
/// and <see cref="SingleFreeBytes"/>, since overwrites are a stream that could otherwise pile up garbage as fast as a
/// drain short of CPU falls behind. The byte bound is half the page source's warm limit: every write takes its pages
/// before its old object is queued, so garbage held here is pages the writes had to find elsewhere; within the warm
/// lists they are pages a drain gave back earlier, past them they are page faults, and the drain's burst then
/// overflows the warm lists and goes back to the OS (4 KiB objects, fio's incompressible data: 16384 handles were
/// 64 MiB; a 128 KiB sequential overwrite faulted 45,000 pages a second and ran at 0.59x).
/// When a single free finds <see cref="DrainHighWater"/> handles or <see cref="DrainHighWaterBytes"/> queued (half the
/// capacity or the byte budget if that is less), or any free finds half the byte budget used, a background work
/// item drains the queue, taking up to 32 handles per lock
/// hold (the kernel's workqueue takes one); the high-water mark does not grow with the capacity, so a stream of
/// overwrites leaves no more garbage between drains than with a small queue. A batch starts a drain only past half
/// the capacity (or half the byte budget): a discard comes in a burst of requests, and a drain running during the
/// burst takes the CPUs its requests need (trims over NBD took 54 ms against 31 ms without it, median of 16 and 8 on
/// 2 loaded cores); the owner's periodic flush (the device's background tick) or the next single free past the mark
/// frees it after the burst.
/// A batch's handles go in with one lock hold; their cells the pool did not mark pending (the entry says so, and
/// the drain frees them accordingly).
/// <see cref="Flush"/> drains everything now and returns only when every handle taken off the queue has been
/// freed; <see cref="Close"/> (pool disposal) flushes and waits for a running worker.
/// The entries are a mapping touched only as the queue fills: <see cref="MetadataBytes"/> counts the pages
/// entries were ever written to since <see cref="ReleaseUnused"/> last gave the pages past the queued ones back,
/// so a queue that was never used, or was drained and released, costs (and counts) no memory. Touching a page not
/// counted yet raises that figure after the caller's memory check (a write checks its limit when it allocates,
/// then queues the old object): <see cref="GrowthAllowed"/> is asked first, and without its leave the free is
/// synchronous (a batch is cut at the last counted entry).
/// A batch that reaches pages not counted yet counts them and faults them in before it queues
/// (<see cref="QueueBatch"/>), outside the lock: a page fault under the lock holds every other discarding thread
/// waiting (a fault costs microseconds on a paravirtualized VM). The trims benchmark's 1024 trims of 64 handles fault
/// a new page every eighth trim; in a profile of the connection's threads during them, faults under this lock were
/// 7% of the samples.
/// </summary>
internal sealed unsafe class DeferredFreeQueue : IThreadPoolWorkItem
{
    /// <summary>Each entry: the handle in the low 32 bits, the bytes its object holds in bits 32..62, and
    /// <see cref="Unmarked"/>. Mapped (zero-filled, resident only where written); null with a capacity of 0.</summary>
    private readonly ulong* _entries;
    private readonly int _capacity;

    // Entries that may be written: the capacity, 0 once Close has unmapped them (checked under the lock, so an
    // enqueue racing with Close never writes to the unmapped range).
    private int _limit;

    // Most entries in use since the pages past them were last given back (under the lock): what is resident.
    private int _touched;

    /// <summary>An entry of a batch: its cell was not marked FreePending (the caller vouched that nothing uses it).</summary>
    private const ulong Unmarked = 1UL << 63;

    // Handles taken off per lock hold by a drain: one lock round trip per 32 frees instead of per free, and a
    // writer's TryEnqueue finds the lock held (and frees synchronously) less often.
    private const int DrainBatch = 32;
    private readonly Lock _lock = new();
    private readonly Action<uint, bool> _free;
    private readonly Prefetch _prefetch;
    private readonly Action<Exception> _onError;
    private readonly int _threshold;
    private readonly int _batchThreshold;
    private readonly int _singleLimit;
    private int _count;
    private long _bytes;
    private long _byteBudget = long.MaxValue;
    private Func<long, bool>? _growthAllowed;
    private int _inFlight;

    // 1 while a batch faults the pages it counted in outside the lock: ReleaseUnused leaves them alone, Close waits.
    private int _populating;
    private int _scheduled;
    private int _running;
    private volatile bool _closed;

    /// <param name="capacity">Handles the queue holds; 0 makes every deferred free synchronous.</param>
    /// <param name="free">Frees one queued handle; the flag says whether its cell was marked FreePending.</param>
    /// <param name="prefetch">Told the handles of a drained batch before they are freed one by one.</param>
    /// <param name="onError">Told about a handle the background worker failed to free.</param>
    public DeferredFreeQueue(int capacity, Action<uint, bool> free, Prefetch prefetch, Action<Exception> onError)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(capacity);
        _capacity = capacity;
        _limit = capacity;
        _entries = capacity == 0 ? null : (ulong*)MemoryMap.Map(MappedBytes);
        _threshold = Math.Max(1, Math.Min(capacity / 2, DrainHighWater));
        _batchThreshold = Math.Max(1, capacity / 2);
        _singleLimit = Math.Min(capacity, SingleFreeLimit);
        _free = free;
        _prefetch = prefetch;
        _onError = onError;
    }

    /// <summary>Starts loading what freeing these handles will touch, so that their cache misses overlap.</summary>
    public delegate void Prefetch(ReadOnlySpan<uint> handles);

    public int Capacity => _capacity;

    /// <summary>Queued handles at which a drain starts (or half the capacity, if less): where the 32,768-handle queue
    /// that was the default before whole discards had to fit started, so garbage between drains stays as it was.</summary>
    public const int DrainHighWater = 16384;

    /// <summary>Most handles queued for a single free to be queued too (or the capacity, if less); past it an
    /// overwrite's free is synchronous, as it was with the 32,768-handle queue, while a discard's batch may go on
    /// filling the capacity.</summary>
    public const int SingleFreeLimit = 2 * DrainHighWater;

    /// <summary>Most bytes the queued objects may hold for a single free to be queued too: half the warm pages the page
    /// source keeps, so that the pages freed by a drain fit on its warm lists with room for the writes meanwhile.</summary>
    public const long SingleFreeBytes = (long)PageSource.WarmLimitPages * PageSource.PageSize / 2;

    /// <summary>Bytes queued at which a single free starts a drain (or half the byte budget, if less).</summary>
    public const long DrainHighWaterBytes = SingleFreeBytes / 2;

    /// <summary>Bytes per queue entry.</summary>
    public const int EntryBytes = sizeof(ulong);

    /// <summary>The resident part of the entries, for the pool's metadata figure: whole pages up to the most entries
    /// written since the last <see cref="ReleaseUnused"/>.</summary>
    public long MetadataBytes => PagesFor(Volatile.Read(ref _touched));

    private long MappedBytes => PagesFor(_capacity);

    private static long PagesFor(int entries) =>
        ((long)entries * EntryBytes + MemoryMap.PageSize - 1) & ~(long)(MemoryMap.PageSize - 1);

    public int Depth => Volatile.Read(ref _count);

    /// <summary>A background drain is queued or running (for tests: whether a free started one).</summary>
    internal bool DrainScheduled => Volatile.Read(ref _scheduled) != 0;

    /// <summary>Bytes the queued objects hold.</summary>
    public long Bytes => Interlocked.Read(ref _bytes);

    /// <summary>Asked, under the queue's lock, before an enqueue writes entries on pages not counted in
    /// <see cref="MetadataBytes"/> yet, with the bytes they would add: false makes those frees synchronous. Null
    /// (the default): the queue grows within its capacity. It must not take the queue's lock.</summary>
    public Func<long, bool>? GrowthAllowed
    {
        get => Volatile.Read(ref _growthAllowed);
        set => Volatile.Write(ref _growthAllowed, value);
    }

    /// <summary>Entries that fit in the pages counted now (under the lock).</summary>
    private int CountedEntries => (int)(PagesFor(_touched) / EntryBytes);

    /// <summary>Whether <paramref name="entries"/> in use may be counted (under the lock): within the counted pages, or
    /// with <see cref="GrowthAllowed"/>'s leave for the pages past them.</summary>
    private bool MayUse(int entries) =>
        entries <= CountedEntries || _growthAllowed is not { } allowed || allowed(PagesFor(entries) - PagesFor(_touched));

    /// <summary>Most bytes the queued objects may hold (long.MaxValue: only the capacity bounds the queue). Lowering
    /// it below what is queued makes further frees synchronous until a drain brings the queue under it.</summary>
    public long ByteBudget
    {
        get => Interlocked.Read(ref _byteBudget);
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            Interlocked.Exchange(ref _byteBudget, value);
            if (Bytes > value / 2)
            {
                Schedule();
            }
        }
    }

    /// <summary>Queues a handle whose object holds <paramref name="bytes"/>; false means the caller must free it now
    /// (lock contended, <see cref="SingleFreeLimit"/> handles or the byte budget reached, growth refused, or closed). Past the
    /// high-water mark it starts a drain, queued or not.</summary>
    public bool TryEnqueue(uint handle, int bytes)
    {
        if (_closed || !_lock.TryEnter())
        {
            return false;
        }

        bool queued = false;
        bool due;
        try
        {
            // MayUse asks the owner's GrowthAllowed, which could throw: the lock must not stay held (every later free
            // would be synchronous and a drain or Flush would wait for it forever).
            long budget = Interlocked.Read(ref _byteBudget);
            if (_count >= Math.Min(_limit, _singleLimit) || _bytes + bytes > Math.Min(budget, SingleFreeBytes) || !MayUse(_count + 1))
            {
                // Refused: the caller frees it now; a drain, if due, makes room for the next ones (a discard's batches
                // may have filled the queue past the mark without starting one).
                due = _limit != 0 && SingleFreeDrainDue(budget);
            }
            else
            {
                // In bounds: _count < min(_limit, _singleLimit) <= capacity, the mapped entries (0 once Close unmapped them).
                _entries[_count++] = handle | ((ulong)(uint)bytes << 32);
                if (_count > _touched)
                {
                    Volatile.Write(ref _touched, _count);
                }

                Interlocked.Add(ref _bytes, bytes);
                queued = true;
                due = SingleFreeDrainDue(budget);
            }
        }
        finally
        {
            _lock.Exit();
        }

        if (due)
        {
            Schedule();
        }

        return queued;
    }

    /// <summary>
    /// Queues a batch of handles whose cells were not marked pending, each with the bytes its object holds, in one
    /// lock hold. Returns how many it took, from the start of the batch, within the capacity and the byte budget: the
    /// caller frees the rest now. It waits for the lock: a holder only copies entries (a drain 32, a batch up to 256),
    /// far less than freeing a batch here would take. Giving up after a brief spin instead (as this did until
    /// 2026-12-05) freed 6-13 of the fstrim benchmark's 1024 batches of 64 on the request path, whenever a holder had
    /// lost its CPU on the two-core machine; the same trims took a median 20.5 ms waiting against 24 ms giving up
    /// (6 interleaved rounds).
    /// </summary>
    public int Enqueue(ReadOnlySpan<uint> handles, ReadOnlySpan<int> bytes)
    {
        int taken = QueueBatch(handles, bytes, mayPopulate: true, out long from, out long to, out bool kick);
        if (taken < 0)
        {
            // In bounds: from < to <= PagesFor(_limit), whole pages of the mapping, which Close keeps until _populating
            // is 0 again.
            MemoryMap.Populate((nint)_entries + (nint)from, to - from);
            Volatile.Write(ref _populating, 0);
            taken = QueueBatch(handles, bytes, mayPopulate: false, out _, out _, out kick);
        }

        if (kick)
        {
            Schedule();
        }

        return taken;
    }

    /// <summary>
    /// <see cref="Enqueue(ReadOnlySpan{uint}, ReadOnlySpan{int})"/> in one lock hold. With <paramref name="mayPopulate"/>,
    /// a batch that would write to pages not counted yet (and has <see cref="GrowthAllowed"/>'s leave for them) queues
    /// nothing: it counts the pages, sets <see cref="_populating"/> and returns -1, for the caller to fault
    /// [<paramref name="from"/>, <paramref name="to"/>) in with the lock let go and call again without.
    /// </summary>
    private int QueueBatch(ReadOnlySpan<uint> handles, ReadOnlySpan<int> bytes, bool mayPopulate, out long from, out long to, out bool kick)
    {
        from = 0;
        to = 0;
        kick = false;
        int taken = 0;
        long added = 0;
        _lock.Enter();
        try
        {
            if (_closed)
            {
                return 0;
            }

            long budget = Interlocked.Read(ref _byteBudget);
            long room = budget - _bytes;
            int most = Math.Min(handles.Length, _limit - _count);
            if (!MayUse(_count + most))
            {
                most = Math.Max(0, Math.Min(most, CountedEntries - _count));
            }

            if (mayPopulate && _count + most > CountedEntries && _populating == 0)
            {
                from = PagesFor(_touched);
                Volatile.Write(ref _touched, _count + most);
                to = PagesFor(_touched);
                _populating = 1;
                return -1;
            }

            // In bounds: _count + most <= _limit <= capacity, the mapped entries (0 once Close unmapped them).
            var entries = new Span<ulong>(_entries + _count, Math.Max(0, most));
            for (; taken < most && added + bytes[taken] <= room; taken++)
            {
                added += bytes[taken];
                entries[taken] = handles[taken] | ((ulong)(uint)bytes[taken] << 32) | Unmarked;
            }

            _count += taken;
            if (_count > _touched)
            {
                Volatile.Write(ref _touched, _count);
            }

            Interlocked.Add(ref _bytes, added);
            kick = _count >= _batchThreshold || _bytes > budget / 2;
        }
        finally
        {
            _lock.Exit();
        }

        return taken;
    }

    /// <summary>Whether a single free starts a drain (under the lock).</summary>
    private bool SingleFreeDrainDue(long budget) => _count >= _threshold || _bytes > Math.Min(budget / 2, DrainHighWaterBytes);

    /// <summary>Frees every queued handle on the calling thread, then waits for frees a worker has in hand.</summary>
    public void Flush()
    {
        Drain();
        var spin = default(SpinWait);
        while (Volatile.Read(ref _inFlight) != 0)
        {
            spin.SpinOnce();
        }
    }

    /// <summary>No more enqueueing; flushes and waits until no worker runs (the pool is about to free its memory).</summary>
    public void Close()
    {
        _closed = true;
        Interlocked.MemoryBarrier();
        Flush();
        var spin = default(SpinWait);
        while (Volatile.Read(ref _running) != 0)
        {
            spin.SpinOnce();
        }

        lock (_lock)
        {
            // A populate under way finishes without the lock, and none starts while it is held (_limit goes to 0).
            while (Volatile.Read(ref _populating) != 0)
            {
                spin.SpinOnce();
            }

            if (_limit != 0)
            {
                MemoryMap.Unmap((nint)_entries, MappedBytes);
                _limit = 0;
                _count = 0;
                Volatile.Write(ref _touched, 0);
            }
        }
    }

    /// <summary>Gives back the pages of entries past the queued ones (the queue drains from the top, so they hold
    /// nothing); returns the bytes given back. For compaction and the idle tick, not the I/O path: it is a madvise.</summary>
    public long ReleaseUnused()
    {
        lock (_lock)
        {
            if (_populating != 0)
            {
                // Pages being faulted in for an enqueue: the next call gives back what it leaves unused.
                return 0;
            }

            long keep = PagesFor(_count);
            long resident = PagesFor(_touched);
            if (resident > keep && _limit != 0)
            {
                // In bounds: keep < resident <= the mapping's length (both whole pages of at most capacity entries).
                MemoryMap.Release((nint)_entries + (nint)keep, resident - keep);
            }

            Volatile.Write(ref _touched, _count);
            return Math.Max(0, resident - keep);
        }
    }

    void IThreadPoolWorkItem.Execute()
    {
        // Announce first, then look at _closed: Close sets _closed, then looks at _running (full fences both sides).
        Interlocked.Exchange(ref _running, 1);
        try
        {
            if (!_closed)
            {
                Drain();
            }
        }
        finally
        {
            Volatile.Write(ref _scheduled, 0);
            Interlocked.Exchange(ref _running, 0);
        }

        // A producer that crossed a threshold while _scheduled was still 1 did not schedule: look again.
        if (!_closed && (Depth >= _threshold || Bytes > ByteBudget / 2))
        {
            Schedule();
        }
    }

    private void Schedule()
    {
        if (Interlocked.CompareExchange(ref _scheduled, 1, 0) == 0)
        {
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        }
    }

    private void Drain()
    {
        Span<ulong> batch = stackalloc ulong[DrainBatch];
        Span<uint> handles = stackalloc uint[DrainBatch];
        while (true)
        {
            int taken;
            long bytes = 0;
            lock (_lock)
            {
                taken = Math.Min(_count, DrainBatch);
                if (taken == 0)
                {
                    return;
                }

                for (int i = 0; i < taken; i++)
                {
                    // In bounds: 0 <= --_count < what TryEnqueue wrote, under the lock.
                    ulong entry = _entries[--_count];
                    batch[i] = entry;
                    handles[i] = (uint)entry;
                    bytes += (long)((entry & ~Unmarked) >> 32);
                }

                Interlocked.Add(ref _inFlight, taken);
            }

            try
            {
                _prefetch(handles[..taken]);
                for (int i = 0; i < taken; i++)
                {
                    try
                    {
                        _free(handles[i], (batch[i] & Unmarked) == 0);
                    }
                    catch (Exception e) when (e is InvalidOperationException or ArgumentException)
                    {
                        _onError(e);
                    }
                }
            }
            finally
            {
                // Counted off once freed: until then the objects still hold their bytes (the budget sees them).
                Interlocked.Add(ref _bytes, -bytes);
                Interlocked.Add(ref _inFlight, -taken);
            }
        }
    }
}
