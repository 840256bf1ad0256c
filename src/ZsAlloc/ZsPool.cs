using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ZsAlloc.Deferred;
using ZsAlloc.Diagnostics;
using ZsAlloc.Handles;
using ZsAlloc.Pages;
using ZsAlloc.Pins;
using ZsAlloc.SizeClasses;
using ZsAlloc.ZsPages;

namespace ZsAlloc;

/// <summary>
/// A zsmalloc-style pool for objects of 1..4096 bytes (compressed 4 KiB blocks), after mm/zsmalloc.c.
///
/// Data structure
///   Size classes: every 16 bytes from 32 to 4096, merged when they would have the same zspage shape
///   (<see cref="SizeClassTable"/>). Each object takes a slot of its class: a 4-byte header (the handle's
///   cell index, so compaction can find the cell of an object it moves) and the payload.
///   Objects of <see cref="HugeClassSize"/> bytes or more go to the huge class: one object per page, no header
///   (compaction never moves them), so 4096 bytes fit.
///
///   Zspage: a run of 1..16 pages (<see cref="PageSource"/>) cut into slots of its class, with a 20-byte
///   descriptor (<see cref="ZsPageDescriptor"/>) named by an id (<see cref="ZsPageTable"/>; the page owner map leads
///   from a page to it). Its pages are virtually contiguous, so an object that crosses
///   a page boundary is still one range and every read is a direct view. Free slots link through their headers.
///   Partial zspages sit in ten fullness bands per class; allocation takes the fullest (<see cref="SizeClass"/>).
///   A new zspage is all untouched tail (slots never handed out); one is added only when the class has no partial
///   zspage, seen again under the class lock once it is made, so a class keeps one tail at most (but for a shrink's
///   race, <see cref="ShrinkTarget"/>).
///   Compaction empties the emptiest zspages into the fullest, then gathers the freed slots left in a class at the end
///   of one zspage, whose pages past its last object go back (<see cref="ShrinkClass"/>).
///   An empty zspage is released at once: its pages go back to the OS with MADV_DONTNEED (but for at most
///   32 MiB of them kept warm for reuse while the pool is busy, see <see cref="PageSource"/>). At the end of a
///   compaction, live zspages above a mark just over the live count take free ids below it and the descriptor
///   table is cut there (<see cref="ShrinkZspages"/>), so the descriptors of emptied zspages go back too.
///
///   Handle: a 32-bit value naming a cell of the <see cref="HandleTable"/> (<see cref="HandleCell"/>). The cell
///   holds the object's location and payload size, so compaction can move the object and rewrite the cell.
///   Metadata per object: the 8-byte cell and the 4-byte header. A cell can also hold a caller's 8-byte word
///   with no object at all (<see cref="StoreWord"/>: zram's same-filled pages).
///
/// Concurrency
///   Cells change only by compare-and-swap. A cell marked Moving belongs to the compactor, which is copying
///   that one object; everyone else who needs the object spins until the new location is written.
///   Readers and writers pin the object (an Interlocked counter of the <see cref="PinTable"/>, chosen by the page
///   the object starts in, never in a descriptor and never given back) and check the cell again after pinning;
///   compaction marks the cell Moving and then waits for the object's counter to drain before copying (the
///   kernel's zspage migrate lock). So a reader or writer waits at most for one object move, and an open
///   <see cref="ZsReadView"/> keeps its object where it is.
///   Free wins the object by swapping the cell to free first; from then on
///   compaction cannot claim it, and the slot is returned under the class lock.
///
/// Lock order (take left before right; never the other way)
///   compaction lock (one compactor per pool)
///     -> class lock (SizeClass.Lock: bands, zspage InUse and free slots, class counters, and the ids of the
///        class's live zspages: compaction renumbers a zspage only under it, so a free reads the owner map under it)
///       -> leaf locks, none held while taking another: handle table, zspage table, page source, deferred queue.
///   Zspage creation and release (mmap/madvise) happen outside the class lock. Pins and cells are lock-free.
/// </summary>
public sealed unsafe class ZsPool : IDisposable
{
    public const int MaxObjectSize = SizeClassTable.MaxAllocSize;

    /// <summary>Bytes in front of each non-huge object: its cell index (the kernel's ZS_HANDLE_SIZE is 8).</summary>
    internal const int HeaderSize = 4;

    private const int PageShift = PageSource.PageShift;

    private readonly SizeClassTable _table;
    private readonly SizeClass[] _classes;
    private readonly SizeClass _huge;
    private readonly PageSource _pages = new();
    private readonly ZsPageTable _zspages = new();
    private readonly PinTable _pins = new();
    private readonly HandleTable _handles;
    private readonly DeferredFreeQueue _deferred;
    private readonly Lock _compactLock = new();
    private readonly PageRun[] _releaseRuns = new PageRun[256];
    private readonly int[] _releaseIds = new int[256];
    private int _releaseCount;
    private readonly ILogger _logger;
    private readonly string _name;
    private long _pagesCompacted;
    private long _compactionRuns;
    private long _objectsMoved;
    private long _words;

    /// <summary>A handle shrink runs only if it can give back at least this many pages of cells (64 KiB).</summary>
    private const int MinimumHandlePagesToShrink = 16;

    /// <summary>Compaction renumbers zspages to cut their descriptors only if that gives back this many pages (16 KiB).</summary>
    private const int MinimumZspagePagesToShrink = 4;
    private long _zspageBytesReleased;
    private volatile bool _disposed;

    public ZsPool(ZsPoolOptions? options = null, ILogger<ZsPool>? logger = null)
    {
        options ??= new ZsPoolOptions();
        _table = new SizeClassTable(options.ChainLimit);
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _name = options.Name;
        _handles = new HandleTable(options.MaxHandleCells);
        _classes = new SizeClass[_table.Count];
        for (int i = 0; i < _table.Count; i++)
        {
            SizeClassInfo info = _table[i];
            _classes[i] = new SizeClass(info, info.PagesPerZspage == 1 && info.ObjectsPerZspage == 1, _zspages);
        }

        _huge = _classes[^1];
        Debug.Assert(_huge.IsHuge && _huge.Size == SizeClassTable.PageSize);
        HugeClassSize = _table.HugeClassSize - HeaderSize;
        _deferred = new DeferredFreeQueue(options.DeferredFreeCapacity, FreeQueued, PrefetchFrees,
            e => ZsPoolLog.DeferredFreeFailed(_logger, _name, e));
    }

    /// <summary>zs_huge_class_size: payloads of at least this many bytes get a page of their own.</summary>
    public int HugeClassSize { get; }

    /// <summary>Pages currently held by zspages (zs_get_total_pages).</summary>
    public long TotalPages => _pages.PagesInUse;

    /// <summary>High-water mark of <see cref="TotalPages"/>.</summary>
    public long PeakPages => _pages.PeakPages;

    /// <summary>Called each time <see cref="TotalPages"/> passes <see cref="PeakPages"/>, by the <see cref="Malloc"/> that
    /// made the new peak once its object is made and no lock of the pool is held: it may read <see cref="TotalPages"/>
    /// and <see cref="MetadataBytes"/>, and must not allocate, free or compact. If it throws, that Malloc retracts its
    /// object (<see cref="Retract"/>) and throws it.</summary>
    public Action? PeakPagesRaised { get; set; }

    /// <summary>An empty pool's <see cref="MetadataBytes"/>: the pin counters, mapped at creation.</summary>
    public static long EmptyMetadataBytes => PinTable.MetadataBytes;

    /// <summary>What storing the first object in an empty pool adds to <see cref="TotalPages"/> (in bytes) and
    /// <see cref="MetadataBytes"/> together: one page (a zspage's pages count as they are first used, and an object
    /// starts at the first page's offset 0), the page map of the arena that page comes from, a zspage descriptor and a
    /// handle cell.</summary>
    public const long FirstObjectBytes = PageSource.PageSize + ((long)PageSource.PagesPerArena * sizeof(int)) + ZsPageTable.Size + sizeof(ulong);

    /// <summary>The pool's own metadata: handle cells, zspage descriptors, pin counters, page owner maps, the deferred
    /// queue's resident entries.</summary>
    public long MetadataBytes => _handles.MetadataBytes + _zspages.MetadataBytes + PinTable.MetadataBytes
        + _pages.MetadataBytes + _deferred.MetadataBytes;

    /// <summary>Bytes of zspage descriptors (20 per id below the table's end).</summary>
    internal long ZspageMetadataBytes => _zspages.MetadataBytes;

    /// <summary>Bytes of zspage descriptors compaction has cut from the table since the pool was created.</summary>
    internal long ZspageBytesReleased => Interlocked.Read(ref _zspageBytesReleased);

    /// <summary>Zspages live (or being created or released) now.</summary>
    internal int LiveZspages => _zspages.Live;

    /// <summary>Readers' and writers' pins held now (<see cref="PinTable.Held"/>).</summary>
    internal long PinsHeld => _pins.Held();

    /// <summary>Arenas mapped now (they go when all their pages are free, <see cref="PageSource.ReleaseEmptyArenas"/>).</summary>
    internal int ArenasMapped => _pages.ArenaCount;

    /// <summary>The id of the zspage an object lies in now (for tests: racy while compaction runs).</summary>
    internal int ZspageOf(uint handle) => _pages.OwnerOf((int)(HandleCell.LocationOf(Volatile.Read(ref *CellOf(handle))) >> PageShift));

    internal SizeClassTable Table => _table;

    public void ResetPeak() => _pages.ResetPeak();

    /// <summary>Zeroes the peak and what counts compaction's work (a device reset: the kernel's pool is new then).</summary>
    public void ResetCounters()
    {
        ResetPeak();
        Interlocked.Exchange(ref _pagesCompacted, 0);
        Interlocked.Exchange(ref _objectsMoved, 0);
        Interlocked.Exchange(ref _compactionRuns, 0);
    }

    /// <summary>
    /// zs_lookup_class_index: the size class an object of <paramref name="size"/> payload bytes (1..4096) goes to.
    /// A smaller index takes less memory per object; objects of one class cost the same whatever their size.
    /// </summary>
    public int ClassIndexOf(int size)
    {
        if ((uint)(size - 1) >= MaxObjectSize)
        {
            ThrowHelper.ThrowSizeOutOfRange(size);
        }

        return size >= HugeClassSize ? _huge.Info.Index : _table.ClassIndexFor(size + HeaderSize);
    }

    /// <summary>Allocates an object of <paramref name="size"/> payload bytes (1..4096) and returns its handle (never 0).</summary>
    public uint Malloc(int size)
    {
        if ((uint)(size - 1) >= MaxObjectSize)
        {
            ThrowHelper.ThrowSizeOutOfRange(size);
        }

        ObjectDisposedException.ThrowIf(_disposed, this);
        SizeClass cls = ClassOf(size);
        uint cell = _handles.Allocate();
        bool peak = false;
        int spare = -1;

        cls.Lock.Enter();
        int id = PickTarget(cls);
        if (id < 0)
        {
            id = AddZspage(cls, cell, out peak, out spare);
        }

        try
        {
            ZsPageDescriptor* d = _zspages[id];
            long location = AllocateSlot(cls, d, cell, ref peak);
            cls.UpdateBand(id, d);

            cls.ObjUsed++;
            cls.BytesStored += size;
            cls.BytesAllocated += size;
            Volatile.Write(ref *_handles.Cell(cell), HandleCell.MakeAllocated(size, location));
        }
        finally
        {
            cls.Lock.Exit();
        }

        if (spare >= 0)
        {
            ReleaseZspage(cls, spare, _zspages[spare], retract: true);
        }

        uint handle = HandleCell.MakeHandle(cell);
        if (peak)
        {
            NotePeak(handle);
        }

        return handle;
    }

    /// <summary>
    /// Malloc's way when its class has no partial zspage (class lock held on entry and on return, let go meanwhile): a
    /// new zspage, made without the lock, added unless another writer added one (or a free made room) meanwhile. Then
    /// that one is returned and the new one is left in <paramref name="spare"/> for the caller to give back once the lock
    /// is let go: two writers that each added theirs left two untouched tails, and PickTarget and ShrinkClass count on
    /// one at most.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private int AddZspage(SizeClass cls, uint cell, out bool peak, out int spare)
    {
        cls.Lock.Exit();
        int created = CreateZspageOrReleaseCell(cls, cell, out peak);
        cls.Lock.Enter();
        int id = PickTarget(cls);
        if (id >= 0)
        {
            spare = created;
            return id;
        }

        spare = -1;
        cls.Add(created, _zspages[created]);
        return created;
    }

    /// <summary>Tells the owner of a new peak (<see cref="PeakPagesRaised"/>) after the Malloc that made it, with no
    /// lock held: a callback that throws leaves no lock taken and nothing half made, only the Malloc's object retracted.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void NotePeak(uint handle)
    {
        try
        {
            PeakPagesRaised?.Invoke();
        }
        catch
        {
            Retract(handle);
            throw;
        }
    }

    /// <summary>Copies <paramref name="source"/> into the object (at most the size it was allocated with).</summary>
    public void Write(uint handle, ReadOnlySpan<byte> source)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        byte* payload = Pin(handle, out int* pinned, out int size);
        if (source.Length > size)
        {
            Interlocked.Decrement(ref *pinned);
            ThrowHelper.ThrowLongerThanObject(source.Length, size);
        }

        // In bounds: the object's slot holds size payload bytes and source.Length <= size.
        source.CopyTo(new Span<byte>(payload, source.Length));
        Interlocked.Decrement(ref *pinned);
    }

    /// <summary>Copies the object's first destination.Length bytes (at most its size) into <paramref name="destination"/>.</summary>
    public void Read(uint handle, Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        byte* payload = Pin(handle, out int* pinned, out int size);
        if (destination.Length > size)
        {
            Interlocked.Decrement(ref *pinned);
            ThrowHelper.ThrowLongerThanObject(destination.Length, size);
        }

        // In bounds: destination.Length <= size payload bytes of the slot.
        new ReadOnlySpan<byte>(payload, destination.Length).CopyTo(destination);
        Interlocked.Decrement(ref *pinned);
    }

    /// <summary>
    /// A view of the object's first <paramref name="length"/> bytes; the object does not move until it is disposed.
    /// Zspage pages are virtually contiguous here, so the view is always direct and <paramref name="scratch"/>
    /// (kept for objects that would have to be stitched from two pages) is not written.
    /// </summary>
    public ZsReadView MapRead(uint handle, int length, Span<byte> scratch)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _ = scratch;
        byte* payload = Pin(handle, out int* pinned, out int size);
        if ((uint)length > (uint)size)
        {
            Interlocked.Decrement(ref *pinned);
            ThrowHelper.ThrowLongerThanObject(length, size);
        }

        // In bounds: 0 <= length <= size payload bytes of the slot; the pin keeps them there until Dispose.
        return new ZsReadView(new ReadOnlySpan<byte>(payload, length), pinned);
    }

    /// <summary>
    /// A hint that the object will be read soon: starts loading its bytes into the CPU cache, so that a caller
    /// reading many objects in a row (a large READ) has the next one arriving while it decompresses this one.
    /// Nothing is pinned: a prefetch never faults, and if the object is freed or moved meanwhile the hint is merely
    /// wasted. <paramref name="length"/> is capped at the object's size. Any handle is safe here, one read racily
    /// from a slot that changed since included (see <see cref="TryLocateForPrefetch"/>).
    /// </summary>
    public void Prefetch(uint handle, int length)
    {
        if (!Sse.IsSupported || _disposed || !TryLocateForPrefetch(handle, out long location, out int size))
        {
            return;
        }

        byte* start = _pages.Address(location);
        byte* end = start + HeaderSize + Math.Min((uint)length, (uint)size);
        for (byte* line = (byte*)((nuint)start & ~(nuint)63); line < end; line += 64)
        {
            Sse.Prefetch0(line);
        }
    }

    /// <summary>
    /// The location and size of an allocated object, from a racy read of its cell, for prefetching only. False for
    /// a handle that names no cell, a free cell, one being moved, and (a word cell holds any value, and a slot read
    /// without its lock may name one) a location past every arena index ever mapped, so the address formed from it is
    /// inside an arena's reservation, or (an arena released since, <see cref="PageSource.ReleaseEmptyArenas"/>) below
    /// 64 MiB from address 0: either way only a prefetch's, which never faults.
    /// </summary>
    private bool TryLocateForPrefetch(uint handle, out long location, out int size)
    {
        location = 0;
        size = 0;
        uint cell = HandleCell.CellOf(handle);
        if (cell >= _handles.Created)
        {
            return false;
        }

        ulong c = Volatile.Read(ref *_handles.Cell(cell));
        if ((c & (HandleCell.Allocated | HandleCell.Moving)) != HandleCell.Allocated
            || HandleCell.LocationOf(c) >= (long)_pages.ArenaIndexLimit << PageSource.ArenaByteShift)
        {
            return false;
        }

        location = HandleCell.LocationOf(c);
        size = HandleCell.SizeOf(c);
        return true;
    }

    public void Free(uint handle)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        FreeCore(handle, queued: false);
    }

    /// <summary>
    /// Frees an object the caller has just allocated and never handed out (a write its memory limit refused): as
    /// <see cref="Free"/>, and if its handle cell is the newest, the cell goes back to never created, as does the
    /// descriptor of a zspage the Malloc created for it, so that <see cref="MetadataBytes"/> is what it was before the
    /// <see cref="Malloc"/>. The handle is refused afterwards as one this pool never gave (ArgumentException), not as a
    /// freed one.
    /// </summary>
    public void Retract(uint handle)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        FreeCore(handle, queued: false, retract: true);
    }

    /// <summary>zs_free_deferred: queues the free and returns; frees at once if the queue is busy or full.</summary>
    public void FreeDeferred(uint handle)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        // Marked pending, the handle is already dead to its owner: a second free or a read is refused.
        int size = HandleCell.SizeOf(ClaimCell(handle, queued: false, keep: ~0UL, set: HandleCell.FreePending));
        bool queued;
        try
        {
            queued = _deferred.TryEnqueue(handle, SlotBytes(size));
        }
        catch
        {
            // DeferredGrowthAllowed threw, before the handle was queued (only scheduling a drain, out of memory, throws
            // after): the pending mark refuses every later free, so the object is freed here or never. Then the owner
            // hears of its failure.
            FreeCore(handle, queued: true);
            throw;
        }

        if (!queued)
        {
            FreeCore(handle, queued: true);
        }
    }

    /// <summary>
    /// zs_free_deferred for a batch (the objects of a discarded range): the handles go into the queue in one lock hold,
    /// and whatever it cannot take (full by handles or bytes) is freed now, so none is ever dropped.
    /// <paramref name="sizes"/> are the objects' payload sizes (as allocated), which the caller records anyway: with
    /// them, the request path touches no handle cell. The cells are not marked FreePending either (the random cell
    /// touch that made a deferred free cost about as much as a free): the caller vouches that nothing uses these
    /// handles any more, so a second free or a read of one is refused only once the drain has freed it. Compaction
    /// may still move a queued object (its cell is rewritten, the drain frees it where it is then).
    /// </summary>
    public void FreeDeferred(ReadOnlySpan<uint> handles, ReadOnlySpan<int> sizes)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (sizes.Length != handles.Length)
        {
            ThrowHelper.ThrowSizesMismatch(handles.Length, sizes.Length);
        }

        Span<int> bytes = stackalloc int[DeferredBatch];
        while (!handles.IsEmpty)
        {
            int n = Math.Min(handles.Length, DeferredBatch);
            int taken = 0;
            if (_deferred.Capacity > 0)
            {
                for (int i = 0; i < n; i++)
                {
                    // The checks a free would make without reading the cell: the handle names a cell, the size an object.
                    if (HandleCell.CellOf(handles[i]) >= _handles.Created)
                    {
                        ThrowHelper.ThrowForeignHandle(handles[i]);
                    }

                    bytes[i] = SlotBytes(sizes[i]);
                }

                try
                {
                    taken = _deferred.Enqueue(handles[..n], bytes[..n]);
                }
                catch
                {
                    // DeferredGrowthAllowed threw, before this batch was queued: the caller holds every handle it passed
                    // as freed, so the rest are freed now, and then the owner hears of its failure.
                    FreeNow(handles);
                    throw;
                }
            }

            FreeNow(handles[taken..n]);

            handles = handles[n..];
            sizes = sizes[n..];
        }
    }

    /// <summary>Handles a batched <see cref="FreeDeferred(ReadOnlySpan{uint}, ReadOnlySpan{int})"/> queues per lock hold.</summary>
    private const int DeferredBatch = 256;

    /// <summary>Handles whose misses <see cref="PrefetchFrees"/> overlaps at once: enough to keep the CPU's line fill
    /// buffers busy, few enough that what it loads is still cached when the frees come.</summary>
    private const int PrefetchBatch = 32;

    /// <summary>Frees unmarked handles synchronously (what a batch's queue did not take), prefetching as the drain does.</summary>
    private void FreeNow(ReadOnlySpan<uint> handles)
    {
        while (!handles.IsEmpty)
        {
            ReadOnlySpan<uint> batch = handles[..Math.Min(handles.Length, PrefetchBatch)];
            PrefetchFrees(batch);
            foreach (uint handle in batch)
            {
                FreeCore(handle, queued: false);
            }

            handles = handles[batch.Length..];
        }
    }

    /// <summary>
    /// Most bytes that objects waiting in the deferred-free queue may hold (their slots' sizes); past it frees are
    /// synchronous. long.MaxValue (the default): only <see cref="ZsPoolOptions.DeferredFreeCapacity"/> bounds it.
    /// The owner of a memory limit sets it so that garbage alone cannot crowd live data out of the limit while
    /// the background drain waits for a CPU.
    /// </summary>
    public long DeferredFreeByteBudget
    {
        get => _deferred.ByteBudget;
        set => _deferred.ByteBudget = value;
    }

    /// <summary>
    /// Asked before the deferred-free queue counts another page of its entries in <see cref="MetadataBytes"/>, with the
    /// bytes it would add; false makes those frees synchronous. A queued free raises the metadata after its caller's
    /// memory check, so the owner of a memory limit says here whether there is room. It runs under the queue's lock:
    /// it may read <see cref="TotalPages"/> and <see cref="MetadataBytes"/>, and must not free or compact. If it throws,
    /// the deferred free that asked frees its objects at once and throws it. Null (the default): only the queue's
    /// capacity bounds its entries.
    /// </summary>
    public Func<long, bool>? DeferredGrowthAllowed
    {
        get => _deferred.GrowthAllowed;
        set => _deferred.GrowthAllowed = value;
    }

    /// <summary>The bytes an object of <paramref name="size"/> payload bytes takes in its zspage (header included).</summary>
    private int SlotBytes(int size)
    {
        if ((uint)(size - 1) >= MaxObjectSize)
        {
            ThrowHelper.ThrowSizeOutOfRange(size);
        }

        return ClassOf(size).Size;
    }

    /// <summary>The class an object of <paramref name="size"/> payload bytes (1..4096, checked by the caller) lives in:
    /// it never changes (compaction moves objects within their class), so the cell's size leads to it without the
    /// zspage's descriptor.</summary>
    private SizeClass ClassOf(int size) => size >= HugeClassSize ? _huge : _classes[_table.ClassIndexFor(size + HeaderSize)];

    /// <summary>
    /// Keeps an 8-byte word in a handle cell of its own, with no object (zram's same-filled pages): 8 bytes of
    /// metadata instead of a slot in a zspage. The handle is read with <see cref="ReadWord"/> and freed with
    /// <see cref="FreeWord"/>, never with the object calls: the cell holds the word itself, so the pool cannot
    /// tell it from an object's cell (the caller records which it holds, as it records the object's size).
    /// Compaction never reaches a word cell: it finds cells through object headers only.
    /// </summary>
    public uint StoreWord(ulong word)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        uint cell = _handles.Allocate();
        Volatile.Write(ref *_handles.Cell(cell), word);
        Interlocked.Increment(ref _words);
        return HandleCell.MakeHandle(cell);
    }

    /// <summary>The word a <see cref="StoreWord"/> handle holds.</summary>
    public ulong ReadWord(uint handle)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Volatile.Read(ref *CellOf(handle));
    }

    public void FreeWord(uint handle)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _ = CellOf(handle);
        _handles.Release(HandleCell.CellOf(handle));
        Interlocked.Decrement(ref _words);
    }

    /// <summary><see cref="FreeWord"/> for a word just stored and never handed out, as <see cref="Retract"/> for an object.</summary>
    public void RetractWord(uint handle)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _ = CellOf(handle);
        _handles.Retract(HandleCell.CellOf(handle));
        Interlocked.Decrement(ref _words);
    }

    /// <summary>
    /// Gives back the handle cells freed objects left behind: once half the objects are freed at random, free cells are
    /// spread over every page of the table. Flushes the deferred frees, picks a mark just above the cells in use and
    /// calls <paramref name="moveHandles"/>, which must pass every live handle the caller holds for which
    /// <see cref="HandleAboveMark"/> is true to <see cref="MoveObjectHandle"/> or <see cref="MoveWordHandle"/> and keep the
    /// handle they return instead. If no cell above the mark is in use at the end, the table is cut there and the
    /// pages of the cells past it go back to the OS. Returns the bytes of cells given back (0: too few to be worth it,
    /// or a handle above the mark stayed, e.g. one the caller did not move or a write that found no free cell below).
    /// Allocations and frees of handles take a lock while <paramref name="moveHandles"/> runs.
    /// </summary>
    public long ShrinkHandles(Action moveHandles)
    {
        ArgumentNullException.ThrowIfNull(moveHandles);
        ObjectDisposedException.ThrowIf(_disposed, this);
        _deferred.Flush();
        if (!_handles.BeginShrink(MinimumHandlePagesToShrink))
        {
            return 0;
        }

        long released = 0;
        try
        {
            moveHandles();
            _deferred.Flush();
        }
        finally
        {
            // Reopens the handle stack even when moveHandles throws: the table must not stay on its slow path.
            released = _handles.EndShrink();
            ZsPoolLog.HandlesShrunk(_logger, _name, released);
        }

        return released;
    }

    /// <summary>Whether a <see cref="ShrinkHandles"/> is running and this handle's cell lies above its mark.</summary>
    public bool HandleAboveMark(uint handle) => _handles.AboveMark(HandleCell.CellOf(handle));

    /// <summary>
    /// The object of <paramref name="handle"/> under a new handle whose cell lies below the shrink's mark; the old
    /// handle is freed. The caller must own the handle (no read, write or free of it meanwhile); compaction may run.
    /// </summary>
    public uint MoveObjectHandle(uint handle)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        // The new cell first: an allocation that fails (the table out of cells) must leave the old cell unmarked, or
        // every later read of the object would wait for a move that never ends.
        uint cell = _handles.Allocate();
        ulong c;
        try
        {
            // Claimed as compaction claims an object it moves: compaction now leaves this object alone.
            c = ClaimCell(handle, queued: false, keep: ~0UL, set: HandleCell.Moving);
        }
        catch
        {
            _handles.Retract(cell);
            throw;
        }

        Volatile.Write(ref *_handles.Cell(cell), c);
        long location = HandleCell.LocationOf(c);
        if (!ClassOf(HandleCell.SizeOf(c)).IsHuge)
        {
            // In bounds: the location is the live object's slot; its first 4 bytes are its header. Written after the
            // new cell, so a compactor that reads the new header finds a cell that points back here.
            Volatile.Write(ref *(uint*)_pages.Address(location), HandleCell.MakeHeader(cell));
        }

        _handles.Release(HandleCell.CellOf(handle));
        return HandleCell.MakeHandle(cell);
    }

    /// <summary>The word of a <see cref="StoreWord"/> handle under a new handle below the shrink's mark; the old one is
    /// freed. The caller must own the handle.</summary>
    public uint MoveWordHandle(uint handle)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ulong word = Volatile.Read(ref *CellOf(handle));
        uint cell = _handles.Allocate();
        Volatile.Write(ref *_handles.Cell(cell), word);
        _handles.Release(HandleCell.CellOf(handle));
        return HandleCell.MakeHandle(cell);
    }

    /// <summary>
    /// The most bytes of freed pages kept resident for reuse (32 MiB unless lowered; rounded down to pages). They are in
    /// no count (<see cref="TotalPages"/>), so the owner of a memory limit lowers this to the room it allows beyond it.
    /// </summary>
    public long WarmLimitBytes
    {
        get => (long)_pages.WarmLimit * PageSource.PageSize;
        set => _pages.WarmLimit = (int)Math.Clamp(value / PageSource.PageSize, 0, PageSource.WarmLimitPages);
    }

    /// <summary>
    /// Gives the pages kept warm for reuse back to the OS if the pool neither freed nor reused any since the previous
    /// call; returns the pages released. For a periodic maintenance tick, so an idle pool keeps none for long.
    /// </summary>
    public int ReleaseWarmIfUnused()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_deferred.Depth == 0)
        {
            // A drained deferred queue keeps nothing worth its pages either.
            _deferred.ReleaseUnused();
        }

        return _pages.ReleaseWarmIfUnused();
    }

    /// <summary>Frees every deferred handle now.</summary>
    public void FlushDeferred()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _deferred.Flush();
    }

    /// <summary>
    /// Compacts every class (largest first, as the kernel): empties the zspages that <see cref="CanCompact"/> counts,
    /// then gathers what freed slots are left in a class at the end of one zspage and gives the pages past its last
    /// object back. Returns the counted pages given back (the fall of <see cref="TotalPages"/> it caused).
    /// </summary>
    public long Compact()
    {
        lock (_compactLock)
        {
            // Checked under the lock: Dispose sets it under the same lock and then unmaps, so a Compact that waited
            // for the lock while the pool was disposed stops here instead of running on unmapped memory.
            ObjectDisposedException.ThrowIf(_disposed, this);
            long started = Stopwatch.GetTimestamp();
            long moved = 0;
            long freed = 0;
            for (int i = _classes.Length - 1; i >= 0; i--)
            {
                if (!_classes[i].IsHuge)
                {
                    freed += CompactClass(_classes[i], ref moved);
                    freed += ShrinkClass(_classes[i], ref moved);
                }
            }

            // A shrink that gave up a move may have left an emptied destination in the burst (ReleaseLater); the next
            // class's compaction would flush it, but class 0 comes last.
            ReleaseDeferredZspages();

            // Compaction is when memory goes back: the few warm pages kept for reuse go too, the arenas left with no
            // page in use, the deferred queue's pages past its queued entries, and the descriptors of the zspages it
            // emptied.
            _pages.ReleaseWarm();
            _pages.ReleaseEmptyArenas();
            _deferred.ReleaseUnused();
            ShrinkZspages();
            Interlocked.Add(ref _pagesCompacted, freed);
            Interlocked.Add(ref _objectsMoved, moved);
            Interlocked.Increment(ref _compactionRuns);
            ZsPoolLog.Compacted(_logger, _name, freed, moved, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            return freed;
        }
    }

    /// <summary>
    /// Gives back the descriptors of the zspages compaction emptied: they are spread over the whole id range, so the
    /// live zspages above a mark just over the live count (<see cref="ZsPageTable.BeginShrink"/>) take free ids below
    /// it, one at a time under their class lock, and the table is cut at the mark. Nothing outside a class lock holds a
    /// live zspage's id (frees read it from the owner map under the lock; readers' pins are by page), so nothing else
    /// needs to know. Compaction lock held (no zspage is isolated). Returns the bytes of descriptors cut.
    /// </summary>
    private long ShrinkZspages()
    {
        if (!_zspages.BeginShrink(MinimumZspagePagesToShrink))
        {
            return 0;
        }

        long released;
        try
        {
            int mark = _zspages.Mark;
            for (int id = _zspages.Created - 1; id >= mark; id--)
            {
                if (!RenumberZspage(id))
                {
                    break;
                }
            }
        }
        finally
        {
            released = _zspages.EndShrink();
        }

        Interlocked.Add(ref _zspageBytesReleased, released);
        ZsPoolLog.ZspagesShrunk(_logger, _name, released);
        return released;
    }

    /// <summary>
    /// If <paramref name="id"/> is a live zspage, gives it a free id below the shrink's mark: its descriptor moves there
    /// and its band list and page owner entries name the new id, all under its class lock. False if no id below the
    /// mark is left (zspages created meanwhile took them).
    /// </summary>
    private bool RenumberZspage(int id)
    {
        ZsPageDescriptor* d = _zspages[id];
        if (!d->IsLive)
        {
            return true;
        }

        // Seen live, its class index is the one it was made with (written before it went live).
        SizeClass cls = _classes[d->ClassIndex];
        int to = -1;
        cls.Lock.Enter();
        // Under the class lock a zspage of this class stays live and keeps its id; one of another class (the id
        // recycled meanwhile) or one gone is left alone.
        if (d->IsLive && d->ClassIndex == cls.Info.Index)
        {
            Debug.Assert(!d->IsIsolated);
            to = _zspages.TakeBelowMark();
            if (to >= 0)
            {
                ZsPageDescriptor* moved = _zspages[to];
                cls.Renumber(d, to, moved);
                _pages.SetOwner(moved->FirstPage, cls.PagesPerZspage, to);
            }
        }
        else
        {
            cls.Lock.Exit();
            return true;
        }

        cls.Lock.Exit();
        if (to < 0)
        {
            return false;
        }

        _zspages.Free(id);
        return true;
    }

    /// <summary>zs_can_compact over all classes: pages compaction could free now.</summary>
    public long CanCompact()
    {
        long pages = 0;
        foreach (SizeClass cls in _classes)
        {
            lock (cls.Lock)
            {
                pages += cls.CanCompact();
            }
        }

        return pages;
    }

    public ZsPoolStats GetStats()
    {
        long bytes = 0, objects = 0, allocated = 0;
        foreach (SizeClass cls in _classes)
        {
            lock (cls.Lock)
            {
                bytes += cls.BytesStored;
                objects += cls.ObjUsed;
                allocated += cls.BytesAllocated;
            }
        }

        return new ZsPoolStats
        {
            PagesUsed = TotalPages,
            PeakPages = PeakPages,
            PagesWarm = _pages.PagesWarm,
            BytesStored = bytes,
            BytesAllocated = allocated,
            Objects = objects,
            Words = Interlocked.Read(ref _words),
            HandleCells = _handles.Created,
            PagesCompacted = Interlocked.Read(ref _pagesCompacted),
            CompactionRuns = Interlocked.Read(ref _compactionRuns),
            ObjectsMoved = Interlocked.Read(ref _objectsMoved),
            DeferredQueueDepth = _deferred.Depth,
            DeferredQueueBytes = _deferred.Bytes,
            DeferredQueueCapacity = _deferred.Capacity,
            MetadataBytes = MetadataBytes,
        };
    }

    /// <summary>The per-class table of the kernel's debugfs <c>classes</c> file.</summary>
    public IReadOnlyList<ZsClassStats> GetClassStats()
    {
        var rows = new ZsClassStats[_classes.Length];
        for (int i = 0; i < _classes.Length; i++)
        {
            SizeClass cls = _classes[i];
            lock (cls.Lock)
            {
                var bands = new int[SizeClass.BandCount];
                for (int band = 0; band < bands.Length; band++)
                {
                    bands[band] = cls.ZspagesInBand(band);
                }

                rows[i] = new ZsClassStats
                {
                    Class = (cls.Size - SizeClassTable.MinAllocSize) / SizeClassTable.ClassDelta,
                    Size = cls.Size,
                    ZspagesByFullness = bands,
                    ObjAllocated = cls.ObjAllocated,
                    ObjUsed = cls.ObjUsed,
                    PagesUsed = (long)cls.Zspages * cls.PagesPerZspage,
                    PagesResident = cls.PagesResident,
                    PagesPerZspage = cls.PagesPerZspage,
                    ObjUntouched = cls.UntouchedSlots,
                    Freeable = cls.CanCompact(),
                };
            }
        }

        return rows;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _deferred.Close();
        lock (_compactLock)
        {
            _disposed = true;
        }

        _pages.Dispose();
        _zspages.Dispose();
        _pins.Dispose();
        _handles.Dispose();
    }

    /// <summary>The drain's free: <paramref name="marked"/> is false for a batch's handles, whose cells were not marked.</summary>
    private void FreeQueued(uint handle, bool marked) => FreeCore(handle, queued: marked);

    /// <summary>
    /// Before the drain frees a batch: starts loading each object's slot header and page owner entry, then its zspage
    /// descriptor, which the frees write or read. The objects of a batch lie anywhere in the pool, so each free would
    /// otherwise wait for its own cache (and, in a VM, TLB) misses one after the other; prefetched, they overlap.
    /// Touches nothing it should not: a handle that names no cell or a free one is skipped (its free reports it).
    /// </summary>
    private void PrefetchFrees(ReadOnlySpan<uint> handles)
    {
        if (!Sse.IsSupported)
        {
            return;
        }

        Span<int> pages = stackalloc int[handles.Length];
        for (int i = 0; i < handles.Length; i++)
        {
            pages[i] = -1;
            // A word cell passed here by mistake is skipped (its free must be the one to report it).
            if (TryLocateForPrefetch(handles[i], out long location, out _))
            {
                pages[i] = (int)(location >> PageShift);
                // An object's slot in a mapped arena, unless misused or its arena was released since (its object moved
                // away by a compaction): a prefetch never faults, and a released arena's owner address is null.
                Sse.Prefetch0(_pages.Address(location));
                Sse.Prefetch0(_pages.OwnerAddress(pages[i]));
            }
        }

        for (int i = 0; i < handles.Length; i++)
        {
            int owner = pages[i] < 0 ? -1 : _pages.OwnerForPrefetch(pages[i]);
            if (owner >= 0)
            {
                Sse.Prefetch0(_zspages[owner]);
            }
        }
    }

    /// <summary>Returns the handle's cell, or throws if the handle cannot be one of this pool's.</summary>
    /// <summary>In bounds: every client of the pool's cells comes through here, and a cell index at or above
    /// <see cref="HandleTable.Created"/> is refused before any pointer is formed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong* CellOf(uint handle)
    {
        uint cell = HandleCell.CellOf(handle);
        if (cell >= _handles.Created)
        {
            ThrowHelper.ThrowForeignHandle(handle);
        }

        return _handles.Cell(cell);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CheckLive(uint handle, ulong cell, bool queued)
    {
        bool pending = (cell & HandleCell.FreePending) != 0;
        if ((cell & HandleCell.Allocated) == 0 || pending != queued)
        {
            ThrowHelper.ThrowFreedHandle(handle);
        }
    }

    /// <summary>
    /// Takes a live object's cell by compare-and-swap once no compactor is moving it: the cell becomes
    /// (cell &amp; <paramref name="keep"/>) | <paramref name="set"/> (a free: 0 and the free cell; a deferred free or a
    /// handle move: everything and a mark). Returns the cell as it was. Throws for a handle that is not live
    /// (<paramref name="queued"/>: the drain's, marked pending).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong ClaimCell(uint handle, bool queued, ulong keep, ulong set)
    {
        ulong* cellPtr = CellOf(handle);
        var spin = default(SpinWait);
        while (true)
        {
            ulong c = Volatile.Read(ref *cellPtr);
            CheckLive(handle, c, queued);
            if ((c & HandleCell.Moving) == 0 && Interlocked.CompareExchange(ref *cellPtr, (c & keep) | set, c) == c)
            {
                return c;
            }

            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    /// <summary>
    /// Pins the object (<see cref="PinTable"/>) and returns its payload and size. The cell is read again after pinning:
    /// if compaction claimed the object in between, the pin is dropped and the new location is awaited. Neither the
    /// page owner map nor the zspage's descriptor is read: the size says whether the object has a header.
    /// </summary>
    private byte* Pin(uint handle, out int* pinned, out int size)
    {
        ulong* cellPtr = CellOf(handle);
        var spin = default(SpinWait);
        while (true)
        {
            ulong c = Volatile.Read(ref *cellPtr);
            CheckLive(handle, c, queued: false);
            if ((c & HandleCell.Moving) != 0)
            {
                spin.SpinOnce(sleep1Threshold: -1);
                continue;
            }

            long location = HandleCell.LocationOf(c);
            int* pin = _pins.For(location);
            Interlocked.Increment(ref *pin);
            if (Volatile.Read(ref *cellPtr) != c)
            {
                Interlocked.Decrement(ref *pin);
                continue;
            }

            // In bounds: the location is one the pool wrote into this cell (AllocateSlot or compaction): a slot
            // inside a zspage's run; the 4-byte header read is the slot's first bytes.
            byte* p = _pages.Address(location);
            size = HandleCell.SizeOf(c);
            if (size < HugeClassSize)
            {
                if (*(uint*)p != HandleCell.MakeHeader(HandleCell.CellOf(handle)))
                {
                    Interlocked.Decrement(ref *pin);
                    ThrowHelper.ThrowCorrupt(handle);
                }

                p += HeaderSize;
            }

            pinned = pin;
            return p;
        }
    }

    private void FreeCore(uint handle, bool queued, bool retract = false)
    {
        ulong c = ClaimCell(handle, queued, keep: 0, set: HandleCell.MakeFree(0));

        // The cell is ours now: compaction can no longer claim the object, so its location is final. Its zspage's id
        // is read under the class lock, which compaction holds to renumber a zspage (RenumberZspage).
        long location = HandleCell.LocationOf(c);
        SizeClass cls = ClassOf(HandleCell.SizeOf(c));
        bool release = false;
        ZsPageDescriptor* d;
        int id;
        cls.Lock.Enter();
        try
        {
            id = _pages.OwnerOf((int)(location >> PageShift));
            d = _zspages[id];
            // First: a madvise that throws in it (UntouchLastSlot) leaves the object counted where it was.
            FreeSlot(cls, d, location);
            cls.ObjUsed--;
            cls.BytesStored -= HandleCell.SizeOf(c);
            if (d->InUse == 0 && !d->IsIsolated)
            {
                cls.Remove(id, d);
                release = true;
            }
            else
            {
                cls.UpdateBand(id, d);
            }
        }
        finally
        {
            cls.Lock.Exit();
        }

        if (release)
        {
            ReleaseZspage(cls, id, d, retract);
        }

        if (retract)
        {
            _handles.Retract(HandleCell.CellOf(handle));
        }
        else
        {
            _handles.Release(HandleCell.CellOf(handle));
        }
    }

    /// <summary>
    /// The zspage a new object goes to: the fullest partial one, as in the kernel, unless it has no freed slot left
    /// (the object would take a slot of its untouched tail and may write a page not counted yet) while another partial
    /// zspage has one to reuse. Class lock held. At most one zspage of a class has a tail that is not all freed
    /// (one is added only when none is partial, seen under the lock: <see cref="AddZspage"/>), so this looks at two
    /// zspages at most. Compaction, which must find a freed slot even past two tails, walks further
    /// (<see cref="SizeClass.PickFullestWithFreedSlot"/>).
    /// </summary>
    private int PickTarget(SizeClass cls)
    {
        int id = cls.PickFullest();
        if (id < 0 || _zspages[id]->FreeSlot >= 0)
        {
            return id;
        }

        int other = cls.PickFullestExcept(id);
        return other >= 0 ? other : id;
    }

    /// <summary>
    /// Takes a slot of the zspage for an object: a freed one first, else the first of its untouched tail, whose
    /// pages up to the slot's end are written from now on and start to count (<paramref name="peak"/> set if that
    /// passed the peak). Class lock held; the zspage is in its class and not full.
    /// </summary>
    private long AllocateSlot(SizeClass cls, ZsPageDescriptor* d, uint cell, ref bool peak)
    {
        int slot = d->FreeSlot;
        bool untouched = slot < 0;
        if (untouched)
        {
            slot = d->Touched++;
            cls.UntouchedSlots--;
        }

        Debug.Assert(slot >= 0 && slot < cls.ObjectsPerZspage && d->Touched <= cls.ObjectsPerZspage);
        long location = ((long)d->FirstPage << PageShift) + ((long)slot * cls.Size);
        if (untouched && (d->Flags & ZsPageDescriptor.FlagResident) == 0)
        {
            int pages = cls.PagesUpTo(slot + 1) - cls.PagesUpTo(slot);
            if (pages > 0)
            {
                cls.PagesResident += pages;
                peak |= _pages.AddResident(pages);
            }
        }

        if (cls.IsHuge)
        {
            // One object per page, no header.
            d->FreeSlot = -1;
        }
        else
        {
            // In bounds: slot < ObjectsPerZspage, so the slot lies inside the zspage's run.
            uint* header = (uint*)_pages.Address(location);
            if (!untouched)
            {
                d->FreeSlot = (short)HandleCell.NextSlotOf(*header);
            }

            *header = HandleCell.MakeHeader(cell);
        }

        d->InUse++;
        return location;
    }

    /// <summary>Compaction's <see cref="AllocateSlot"/>: a freed slot (the zspage's FreeSlot >= 0), which counts no
    /// page, so no peak is left to tell. Class lock held.</summary>
    private long AllocateFreedSlot(SizeClass cls, ZsPageDescriptor* d, uint cell)
    {
        Debug.Assert(d->FreeSlot >= 0);
        bool peak = false;
        long location = AllocateSlot(cls, d, cell, ref peak);
        Debug.Assert(!peak);
        return location;
    }

    /// <summary>Returns an object's slot to its zspage. Class lock held.</summary>
    private void FreeSlot(SizeClass cls, ZsPageDescriptor* d, long location)
    {
        if (cls.IsHuge)
        {
            d->FreeSlot = 0;
        }
        else
        {
            // In bounds: location is the freed object's own slot in this zspage (from its cell, claimed by the caller).
            long offset = location - ((long)d->FirstPage << PageShift);
            int slot = (int)(offset / cls.Size);
            // Only in the zspage being filled (a tail left): a zspage touched to its end gets a tail again only from
            // compaction (ShrinkClass), when no other has one, so a class keeps at most one (PickTarget and
            // ShrinkClass count on that).
            if (slot == d->Touched - 1 && d->Touched < cls.ObjectsPerZspage && (d->Flags & ZsPageDescriptor.FlagResident) == 0)
            {
                UntouchLastSlot(cls, d, slot);
            }
            else
            {
                *(uint*)_pages.Address(location) = HandleCell.MakeFreeSlot(d->FreeSlot);
                d->FreeSlot = (short)slot;
            }
        }

        d->InUse--;
    }

    /// <summary>
    /// The newest slot of a zspage's tail goes back to the tail, and the pages only it reached into go back to the
    /// OS: an allocation refused at the memory limit (allocated, found over, freed) must not leave a page counted.
    /// Class lock held (the madvise, rare, runs under it: nothing else can be in those pages). The madvise comes
    /// first: if it throws, the slot is still the object's and nothing is counted differently.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void UntouchLastSlot(SizeClass cls, ZsPageDescriptor* d, int slot)
    {
        int keep = cls.PagesUpTo(slot);
        int had = cls.PagesUpTo(slot + 1);
        if (had > keep)
        {
            _pages.ReleasePages(d->FirstPage + keep, had - keep);
            cls.PagesResident -= had - keep;
        }

        d->Touched = (short)slot;
        cls.UntouchedSlots++;
    }

    private int CreateZspageOrReleaseCell(SizeClass cls, uint cell, out bool peak)
    {
        try
        {
            return CreateZspage(cls, out peak);
        }
        catch (OutOfMemoryException)
        {
            _handles.Retract(cell);
            throw;
        }
    }

    /// <summary>
    /// A new zspage, all of it an untouched tail. No lock held; the class lock is taken after. On zeroed pages
    /// (fresh or given back to the OS) the pages count only as slots are first handed out: a zspage that is never
    /// filled to its end costs only the pages it uses (the kernel allocates all of a zspage's pages at once).
    /// </summary>
    private int CreateZspage(SizeClass cls, out bool peak)
    {
        int id = _zspages.Allocate();
        int head;
        bool zeroed;
        try
        {
            head = _pages.AllocateRun(cls.PagesPerZspage, out zeroed, out peak);
        }
        catch
        {
            _zspages.Retract(id);
            throw;
        }

        ZsPageDescriptor* d = _zspages[id];
        d->FirstPage = head;
        d->Prev = -1;
        d->Next = -1;
        d->InUse = 0;
        d->ClassIndex = (byte)cls.Info.Index;
        d->Band = SizeClass.BandEmpty;
        d->FreeSlot = -1;
        d->Touched = 0;
        // Nothing is written here: slots get their header as they are handed out. A zeroed run counts as its slots
        // are first used; a warm run is resident already and counted in full by the page source. Live once in its class.
        d->Flags = zeroed ? (byte)0 : ZsPageDescriptor.FlagResident;

        _pages.SetOwner(head, cls.PagesPerZspage, id);
        return id;
    }

    /// <summary>Gives an empty zspage's pages back to the OS. Already removed from its class; no lock held.
    /// <paramref name="retract"/>: its last object was retracted (<see cref="Retract"/>), so if the zspage was the
    /// newest, its descriptor goes back to never created, as the object's handle cell does.</summary>
    private void ReleaseZspage(SizeClass cls, int id, ZsPageDescriptor* d, bool retract)
    {
        if (retract)
        {
            _pages.RetractRun(d->FirstPage, cls.PagesPerZspage, cls.PagesOf(d));
            _zspages.Retract(id);
        }
        else
        {
            _pages.FreeRun(d->FirstPage, cls.PagesPerZspage, cls.PagesOf(d));
            _zspages.Free(id);
        }
    }

    /// <summary>Compaction frees zspages in bursts: it gathers them and gives their pages back together. Compaction lock held.</summary>
    /// <returns>The counted pages of the zspage, given back with it.</returns>
    private int ReleaseLater(SizeClass cls, int id, ZsPageDescriptor* d)
    {
        if (_releaseCount == _releaseRuns.Length)
        {
            ReleaseDeferredZspages();
        }

        int resident = cls.PagesOf(d);
        _releaseRuns[_releaseCount] = new PageRun(d->FirstPage, cls.PagesPerZspage, resident);
        _releaseIds[_releaseCount++] = id;
        return resident;
    }

    private void ReleaseDeferredZspages()
    {
        _pages.FreeRuns(_releaseRuns.AsSpan(0, _releaseCount));
        for (int i = 0; i < _releaseCount; i++)
        {
            _zspages.Free(_releaseIds[i]);
        }

        _releaseCount = 0;
    }

    /// <summary>
    /// __zs_compact for one class: drains the emptiest zspages into the fullest while zs_can_compact says a
    /// whole zspage can be freed. One object per class-lock hold; the copy itself runs without the lock.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // Runs rarely but long: optimize it from the first call.
    private long CompactClass(SizeClass cls, ref long moved)
    {
        long freed = 0;
        int srcId = -1;
        ZsPageDescriptor* src = null;
        int cursor = 0;
        int movedSlot = -1;
        int misses = 0;
        while (true)
        {
            cls.Lock.Enter();
            if (movedSlot >= 0)
            {
                // The object's old copy: its cell already points at the new one.
                FreeSlot(cls, src, ((long)src->FirstPage << PageShift) + ((long)movedSlot * cls.Size));
                cls.UpdateBand(srcId, src);
                movedSlot = -1;
            }

            if (src != null && src->InUse == 0)
            {
                cls.Remove(srcId, src);
                cls.Lock.Exit();
                freed += ReleaseLater(cls, srcId, src);
                src = null;
                continue;
            }

            if (src == null)
            {
                srcId = cls.CanCompact() == 0 ? -1 : cls.PickEmptiest();
                if (srcId >= 0 && _zspages[srcId]->Touched < cls.ObjectsPerZspage)
                {
                    // The zspage being filled (its untouched tail is free memory, not waste) stays: its freed slots
                    // take objects like any other's, and CanCompact counts on exactly that.
                    srcId = cls.PickEmptiestExcept(srcId);
                }
                if (srcId < 0)
                {
                    cls.Lock.Exit();
                    ReleaseDeferredZspages();
                    return freed;
                }

                src = _zspages[srcId];
                cls.Isolate(srcId, src);
                cursor = 0;
            }

            // Only a freed slot takes a moved object: filling a tail would write pages not counted yet.
            int dstId = cls.PickFullestWithFreedSlot();
            if (dstId < 0)
            {
                cls.PutBack(srcId, src);
                cls.Lock.Exit();
                ReleaseDeferredZspages();
                return freed;
            }

            if (!ClaimNextObject(cls, src, ref cursor, out ulong* cellPtr, out ulong claimed, out long srcLocation))
            {
                // What is still counted in src is being freed right now; let those frees finish.
                cls.PutBack(srcId, src);
                src = null;
                cls.Lock.Exit();
                if (++misses > 64)
                {
                    ReleaseDeferredZspages();
                    return freed;
                }

                Thread.Yield();
                continue;
            }

            // In bounds: srcLocation is the claimed object's slot in src (ClaimNextObject walked src's slots).
            byte* from = _pages.Address(srcLocation);
            int size = HandleCell.SizeOf(claimed);
            ZsPageDescriptor* dst = _zspages[dstId];
            long dstLocation = AllocateFreedSlot(cls, dst, HandleCell.CellOfHeader(*(uint*)from));
            cls.UpdateBand(dstId, dst);
            cls.Lock.Exit();

            // Readers and writers inside the object finish first; new ones see Moving and wait for the new location.
            if (!PinTable.WaitForZero(_pins.For(srcLocation)))
            {
                // Someone keeps src pinned (an open view, perhaps held by a thread that now waits for this very
                // object): give the object back where it is and leave this class for another time.
                Volatile.Write(ref *cellPtr, claimed);
                return freed + AbandonMove(cls, srcId, src, dstId, dst, dstLocation);
            }

            // In bounds: both slots hold Size bytes and size <= Size - HeaderSize; the header is already written.
            Buffer.MemoryCopy(from + HeaderSize, _pages.Address(dstLocation) + HeaderSize, size, size);
            Volatile.Write(ref *cellPtr, HandleCell.WithLocation(claimed, dstLocation));
            movedSlot = (int)((srcLocation - ((long)src->FirstPage << PageShift)) / cls.Size);
            moved++;
        }
    }

    /// <summary>
    /// After <see cref="CompactClass"/> a class still has freed slots, fewer than a zspage holds, scattered over its
    /// zspages, and each zspage keeps its pages for them: up to a zspage of waste per class (16 pages with 16-page
    /// chains), which is what the kernel leaves too. This gathers them at the end of one zspage Z (the class's tail
    /// zspage if it has one, else its emptiest) and makes them Z's untouched tail again, whose pages go back to the OS:
    /// Z's highest objects move into the freed slots of the other zspages (filling them) and then into Z's own lowest
    /// freed slots. A class is then left with less than one page of waste. Compaction lock held; returns the counted
    /// pages given back.
    ///
    /// Z is isolated meanwhile, so no allocation reaches it and its free list is not read: moves into Z's own slots
    /// take them by their header (slot by slot from the bottom) without unlinking them, and the list is rebuilt from
    /// the headers before Z goes back on its band (frees into Z still push onto the list meanwhile, harmlessly).
    /// </summary>
    private long ShrinkClass(SizeClass cls, ref long moved)
    {
        // A Z that empties is released whole; the freed slots left in the others are gathered in a next round.
        long released = 0;
        bool emptied = true;
        for (int round = 0; emptied && round < 8; round++)
        {
            released += ShrinkOnce(cls, ref moved, out emptied);
        }

        return released;
    }

    /// <summary>One round of <see cref="ShrinkClass"/>; <paramref name="emptied"/>: Z emptied and was released.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // As CompactClass.
    private long ShrinkOnce(SizeClass cls, ref long moved, out bool emptied)
    {
        emptied = false;
        cls.Lock.Enter();
        int zId = ShrinkTarget(cls);
        if (zId < 0)
        {
            cls.Lock.Exit();
            return 0;
        }

        ZsPageDescriptor* z = _zspages[zId];
        cls.Isolate(zId, z);
        long start = (long)z->FirstPage << PageShift;
        int top = z->Touched - 1;
        int low = 0;
        int movedSlot = -1;
        long released = 0;
        while (true)
        {
            if (movedSlot >= 0)
            {
                // The object's old copy: its cell already points at the new one. Only marked free (not listed, not
                // untouched one by one): the end of the shrink makes the tail and the list.
                FreeShrinkSlot(cls, z, start, movedSlot);
                cls.UpdateBand(zId, z);
                movedSlot = -1;
            }

            if (!ClaimHighestObject(cls, z, ref top, out ulong* cellPtr, out ulong claimed))
            {
                break;
            }

            long srcLocation = start + ((long)top * cls.Size);
            // In bounds: srcLocation is the claimed object's slot in Z (ClaimHighestObject walked Z's slots).
            byte* from = _pages.Address(srcLocation);
            uint cell = HandleCell.CellOfHeader(*(uint*)from);
            int dstId = cls.PickFullestWithFreedSlot();
            ZsPageDescriptor* dst;
            long dstLocation;
            if (dstId >= 0)
            {
                dst = _zspages[dstId];
                dstLocation = AllocateFreedSlot(cls, dst, cell);
                cls.UpdateBand(dstId, dst);
            }
            else
            {
                // No freed slot elsewhere: Z's lowest freed slot below the object, if any.
                while (low < top && IsObjectSlot(start, cls, low))
                {
                    low++;
                }

                if (low >= top)
                {
                    Volatile.Write(ref *cellPtr, claimed);
                    break;
                }

                dstId = zId;
                dst = z;
                dstLocation = start + ((long)low * cls.Size);
                // In bounds: low < top < Z's Touched slots. Not unlinked from Z's free list: it is rebuilt at the end.
                *(uint*)_pages.Address(dstLocation) = HandleCell.MakeHeader(cell);
                z->InUse++;
                cls.UpdateBand(zId, z);
                low++;
            }

            cls.Lock.Exit();
            if (!PinTable.WaitForZero(_pins.For(srcLocation)))
            {
                // An open view keeps Z pinned: the object stays, the slot taken for it is freed again.
                Volatile.Write(ref *cellPtr, claimed);
                cls.Lock.Enter();
                if (dst == z)
                {
                    FreeShrinkSlot(cls, z, start, low - 1);
                    cls.UpdateBand(zId, z);
                }
                else
                {
                    // Frees may have emptied it meanwhile but for this slot.
                    FreeSlot(cls, dst, dstLocation);
                    if (dst->InUse == 0 && !dst->IsIsolated)
                    {
                        cls.Remove(dstId, dst);
                        cls.Lock.Exit();
                        released += ReleaseLater(cls, dstId, dst);
                        cls.Lock.Enter();
                    }
                    else
                    {
                        cls.UpdateBand(dstId, dst);
                    }
                }

                break;
            }

            // In bounds: both slots hold Size bytes and the payload is at most Size - HeaderSize; headers are written.
            int size = HandleCell.SizeOf(claimed);
            Buffer.MemoryCopy(from + HeaderSize, _pages.Address(dstLocation) + HeaderSize, size, size);
            Volatile.Write(ref *cellPtr, HandleCell.WithLocation(claimed, dstLocation));
            movedSlot = top;
            moved++;
            cls.Lock.Enter();
        }

        emptied = z->InUse == 0;
        return released + FinishShrink(cls, zId, z);
    }

    /// <summary>Marks a slot of the shrinking Z free (its header only; Z's list is rebuilt at the end). Class lock held.</summary>
    private void FreeShrinkSlot(SizeClass cls, ZsPageDescriptor* z, long start, int slot)
    {
        // In bounds: slot < Touched, inside Z's run.
        *(uint*)_pages.Address(start + ((long)slot * cls.Size)) = HandleCell.MakeFreeSlot(-1);
        z->InUse--;
    }

    /// <summary>
    /// The zspage a shrink gathers the class's freed slots in: the one with an untouched tail, else the emptiest partial
    /// one. Without freed slots, only a tail zspage made from a warm run (its unused tail resident and counted) is worth
    /// it. -1 for none, or for two tails (a writer added a zspage while a shrink had the tail one isolated). Class lock held.
    /// </summary>
    private int ShrinkTarget(SizeClass cls)
    {
        // Without freed slots every zspage but the tail one is full, so FindTails looks at one zspage at most; with
        // them, at the partial ones compaction left: fewer than a zspage holds objects.
        int tails = cls.FindTails(out int tail);
        if (cls.ObjAllocated - cls.ObjUsed - cls.UntouchedSlots <= 0)
        {
            return tails == 1 && (_zspages[tail]->Flags & ZsPageDescriptor.FlagResident) != 0 ? tail : -1;
        }

        return tails == 0 ? cls.PickEmptiest() : tails == 1 ? tail : -1;
    }

    /// <summary>
    /// Claims (marks Moving) the highest object of Z at or below <paramref name="top"/>, moving the cursor to it.
    /// Objects being freed (their cell no longer points here) are passed over. Class lock held.
    /// </summary>
    private bool ClaimHighestObject(SizeClass cls, ZsPageDescriptor* z, ref int top, out ulong* cellPtr, out ulong claimed)
    {
        long start = (long)z->FirstPage << PageShift;
        for (top = Math.Min(top, z->Touched - 1); top >= 0; top--)
        {
            // top < Touched <= ObjectsPerZspage: the slot lies in Z's run.
            if (TryClaimObjectAt(start + ((long)top * cls.Size), out cellPtr, out claimed))
            {
                return true;
            }
        }

        cellPtr = null;
        claimed = 0;
        return false;
    }

    /// <summary>
    /// Claims (marks Moving) the object in the slot at <paramref name="location"/>, if the slot holds one whose cell
    /// points here, allocated and not being moved: compaction's claim, which never waits (an object whose free has
    /// begun is passed over). Class lock held; the slot lies below its zspage's Touched.
    /// </summary>
    private bool TryClaimObjectAt(long location, out ulong* cellPtr, out ulong claimed)
    {
        // In bounds: the caller's slot lies in its zspage's run. The header was written by the pool (client bytes go
        // after it, at most the object's size), so the cell index it names was handed out by the handle table.
        uint header = *(uint*)_pages.Address(location);
        if ((header & HandleCell.HeaderAllocated) != 0)
        {
            cellPtr = _handles.Cell(HandleCell.CellOfHeader(header));
            claimed = Volatile.Read(ref *cellPtr);
            if ((claimed & (HandleCell.Allocated | HandleCell.Moving)) == HandleCell.Allocated && HandleCell.LocationOf(claimed) == location
                && Interlocked.CompareExchange(ref *cellPtr, claimed | HandleCell.Moving, claimed) == claimed)
            {
                return true;
            }
        }

        cellPtr = null;
        claimed = 0;
        return false;
    }

    /// <summary>Whether a slot below Touched holds an object (its header is an allocated one). Class lock held.</summary>
    private bool IsObjectSlot(long start, SizeClass cls, int slot) =>
        // In bounds: callers pass slots below Touched, inside the zspage's run.
        (*(uint*)_pages.Address(start + ((long)slot * cls.Size)) & HandleCell.HeaderAllocated) != 0;

    /// <summary>
    /// Ends a shrink (class lock held on entry, released here): Z's freed slots past its last object become its untouched
    /// tail and their pages go back to the OS (unless another zspage got a tail meanwhile: a class keeps at most one),
    /// its free list is rebuilt from the headers, lowest slot first, and Z goes back on its band (or, empty, is released).
    /// Returns the counted pages given back.
    /// </summary>
    private long FinishShrink(SizeClass cls, int zId, ZsPageDescriptor* z)
    {
        if (z->InUse == 0)
        {
            cls.Remove(zId, z);
            cls.Lock.Exit();
            long pages = ReleaseLater(cls, zId, z);
            ReleaseDeferredZspages();
            return pages;
        }

        long start = (long)z->FirstPage << PageShift;
        int touched = z->Touched;
        while (touched > 0 && !IsObjectSlot(start, cls, touched - 1))
        {
            touched--;
        }

        int released = 0;
        try
        {
            bool resident = (z->Flags & ZsPageDescriptor.FlagResident) != 0;
            if ((touched < z->Touched || resident) && (z->Touched < cls.ObjectsPerZspage || cls.FindTails(out _) == 0))
            {
                int had = cls.PagesOf(z);
                int keep = cls.PagesUpTo(touched);
                if (had > keep)
                {
                    // First: if the madvise throws, Z keeps its slots and counts as they were.
                    _pages.ReleasePages(z->FirstPage + keep, had - keep);
                    released = had - keep;
                    cls.PagesResident -= released;
                }

                cls.UntouchedSlots += z->Touched - touched;
                z->Touched = (short)touched;
                z->Flags = (byte)(z->Flags & ~ZsPageDescriptor.FlagResident);
            }
        }
        finally
        {
            // Even after a failed madvise: Z's list must be whole again and Z back on its band, the lock let go.
            z->FreeSlot = -1;
            for (int slot = z->Touched - 1; slot >= 0; slot--)
            {
                if (!IsObjectSlot(start, cls, slot))
                {
                    // In bounds: slot < Touched, inside Z's run.
                    *(uint*)_pages.Address(start + ((long)slot * cls.Size)) = HandleCell.MakeFreeSlot(z->FreeSlot);
                    z->FreeSlot = (short)slot;
                }
            }

            cls.PutBack(zId, z);
            cls.Lock.Exit();
        }

        return released;
    }

    /// <summary>Undoes a claimed move whose object stayed in src: frees the slot taken in dst, puts src back.
    /// Returns the pages released (dst, if frees emptied it meanwhile).</summary>
    private long AbandonMove(SizeClass cls, int srcId, ZsPageDescriptor* src, int dstId, ZsPageDescriptor* dst, long dstLocation)
    {
        bool releaseDst = false;
        cls.Lock.Enter();
        FreeSlot(cls, dst, dstLocation);
        if (dst->InUse == 0 && !dst->IsIsolated)
        {
            cls.Remove(dstId, dst);
            releaseDst = true;
        }
        else
        {
            cls.UpdateBand(dstId, dst);
        }

        bool releaseSrc = src->InUse == 0;
        if (releaseSrc)
        {
            cls.Remove(srcId, src);
        }
        else
        {
            cls.PutBack(srcId, src);
        }

        cls.Lock.Exit();
        long released = 0;
        if (releaseDst)
        {
            released += ReleaseLater(cls, dstId, dst);
        }

        if (releaseSrc)
        {
            released += ReleaseLater(cls, srcId, src);
        }

        ReleaseDeferredZspages();
        return released;
    }

    /// <summary>
    /// Finds the next object of src from <paramref name="cursor"/> and marks its cell Moving. Objects whose free
    /// has begun (their cell no longer points here) are skipped. Class lock held.
    /// </summary>
    private bool ClaimNextObject(SizeClass cls, ZsPageDescriptor* src, ref int cursor, out ulong* cellPtr, out ulong claimed, out long location)
    {
        long start = (long)src->FirstPage << PageShift;
        for (; cursor < src->Touched; cursor++)
        {
            // cursor < Touched <= ObjectsPerZspage: the slot lies in the zspage's run.
            location = start + ((long)cursor * cls.Size);
            if (TryClaimObjectAt(location, out cellPtr, out claimed))
            {
                cursor++;
                return true;
            }
        }

        cellPtr = null;
        claimed = 0;
        location = 0;
        return false;
    }
}
