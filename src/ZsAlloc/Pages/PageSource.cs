using System.Numerics;
using System.Runtime.CompilerServices;
using ZsAlloc.Native;
using ZsAlloc.SizeClasses;

namespace ZsAlloc.Pages;

/// <summary>
/// Where zspage pages come from. Pages are carved out of 64 MiB anonymous mappings (arenas), never one mapping
/// per zspage: Linux allows only vm.max_map_count (65530) mappings per process. A zspage gets a run of
/// 1..16 virtually contiguous pages of one arena, so an object that crosses a page boundary is still one
/// contiguous range of bytes. A freed run is given back to the OS with MADV_DONTNEED (RSS falls, the address
/// range stays mapped; after a short stay on the warm lists, below) and kept on a free list per run length for
/// reuse; a longer free run is split when no run of the exact length is free, and fresh pages are taken from
/// the newest arena last. Free runs are joined only when the newest arena is used up, before another is mapped
/// (<see cref="Coalesce"/>): pages freed as short runs (huge objects' single pages) must serve longer ones once the
/// mix of sizes changes, or every change maps arenas (address space and a 64 KiB owner map each, kept while any page is in use)
/// while pages are free. Not on every free: the lists stay singly linked and a free costs no neighbour lookup.
///
/// Page numbers are global: arena index * 16384 + page within the arena. An object's location is its global
/// byte offset (page number * 4096 + offset), 38 bits for the 4096 arenas (256 GiB) allowed.
///
/// Freed runs first go on "warm" lists (still resident) that allocation tries first: a pool that frees and
/// allocates at the same rate then pays neither the madvise (a TLB shootdown in a threaded process) nor the
/// page faults of refilling, as the kernel's per-CPU page lists spare zsmalloc. The limit, 32 MiB
/// (<see cref="WarmLimitPages"/>), is the size of the bursts: the deferred-free queue holds up to 16 MiB of overwritten
/// objects (<see cref="Deferred.DeferredFreeQueue.SingleFreeBytes"/>, half this limit) and drains them at once, and a sequential overwrite empties whole zspages as it goes, so a smaller limit gave most of each burst
/// back only for the next writes to fault it in again (measured: docs/BENCHMARKS.md). Past the limit half of
/// them are released in one burst, neighbouring runs in one call, the run lengths least allocated lately first: an
/// overwrite that changes the mix of object sizes (new data over a corpus's) frees zspages of lengths it no longer
/// allocates along with the ones it does, and releasing by length alone gave back the runs the next writes needed
/// (a first 128 KiB sequential overwrite of the swap-like corpus faulted 2.2 times as often and ran 0.62x as fast).
/// An allocation with no warm run of its length takes the front of a longer warm run. Warm pages are not in mem_used_total, so an idle
/// pool must not keep them: <see cref="ReleaseWarmIfUnused"/> (the device's maintenance tick) releases them once
/// none was freed or reused since its previous call, and <see cref="ReleaseWarm"/> releases them all (compaction
/// calls it).
///
/// The owner map (4 bytes a page) says which zspage holds each page, so a handle's location leads to its
/// zspage descriptor. Head pages of free runs reuse their owner entry as the free-list link.
///
/// An arena whose pages are all free again (a whole-device discard, a reset, a burst that has passed) is unmapped with its
/// owner map at compaction and when the pool goes idle (<see cref="ReleaseEmptyArenas"/>), as the kernel's pool gives
/// every page back: otherwise each arena ever mapped keeps 64 KiB counted in mem_used_total for the pool's life. Its
/// index is reused before a new one is taken. Nothing can reach a released arena: no zspage holds any of its pages.
///
/// One lock (a leaf: nothing else is taken while it is held) guards the free lists and the counters.
/// </summary>
internal sealed unsafe class PageSource : IDisposable
{
    public const int PageShift = 12;
    public const int PageSize = 1 << PageShift;
    public const int ArenaPageShift = 14;
    public const int PagesPerArena = 1 << ArenaPageShift;
    public const int ArenaByteShift = ArenaPageShift + PageShift;
    public const long ArenaBytes = 1L << ArenaByteShift;
    public const int MaxArenas = 4096;
    public const int MaxRunPages = SizeClassTable.MaxChainLimit;
    public const int NoOwner = -1;
    public const int WarmLimitPages = 8192;

    /// <summary>Warm runs released per madvise batch: bounds the stack buffer, not the burst.</summary>
    private const int TrimBatchRuns = 256;

    private readonly nint[] _arenaBase = new nint[MaxArenas];
    private readonly int[]?[] _owners = new int[MaxArenas][];
    private readonly int[] _freeRunHead = new int[MaxRunPages + 1];
    private readonly int[] _warmRunHead = new int[MaxRunPages + 1];
    private readonly int[] _runDemand = new int[MaxRunPages + 1];
    private readonly int[] _releasedArenas = new int[MaxArenas];
    private readonly int[] _freeInArena = new int[MaxArenas];
    private readonly Lock _lock = new();
    private int _arenaCount;
    private int _releasedCount;
    private int _arenasMapped;
    private int _freshUntouched;
    private int _nextFreshPage;
    private int _freshLimit;
    private long _pagesInUse;
    private long _peakPages;
    private long _pagesFree;
    private long _listedSinceCoalesce;
    private int _pagesWarm;
    private bool _warmUsed;
    private int _warmLimit = WarmLimitPages;
    private bool _disposed;

    public PageSource()
    {
        if (Environment.SystemPageSize != PageSize)
        {
            throw new PlatformNotSupportedException($"The pool needs 4 KiB pages; this system uses {Environment.SystemPageSize}.");
        }

        Array.Fill(_freeRunHead, NoOwner);
        Array.Fill(_warmRunHead, NoOwner);
    }

    /// <summary>
    /// Pages held by zspages now and resident (zs_get_total_pages): all of a reused warm run, and of a zeroed run the
    /// pages its user has written (<see cref="AddResident"/>).
    /// </summary>
    public long PagesInUse => Volatile.Read(ref _pagesInUse);

    public long PeakPages => Volatile.Read(ref _peakPages);

    /// <summary>Pages of mapped arenas that are on the free lists (already given back to the OS).</summary>
    public long PagesFree => Volatile.Read(ref _pagesFree);

    /// <summary>Freed pages kept resident for reuse (at most <see cref="WarmLimit"/>).</summary>
    public int PagesWarm => Volatile.Read(ref _pagesWarm);

    /// <summary>
    /// The most pages kept warm: <see cref="WarmLimitPages"/> unless the pool's owner lowers it (a memory limit: warm
    /// pages are resident but in no count a limit looks at). Lowering it gives back the excess at once.
    /// </summary>
    public int WarmLimit
    {
        get => Volatile.Read(ref _warmLimit);
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            Volatile.Write(ref _warmLimit, Math.Min(value, WarmLimitPages));
            if (PagesWarm > value)
            {
                TrimWarm(value / 2);
            }
        }
    }

    /// <summary>Arenas mapped now.</summary>
    public int ArenaCount => Volatile.Read(ref _arenasMapped);

    /// <summary>The owner maps: 4 bytes for every page of every arena, but for the newest while no page of it was
    /// handed out: a write refused at the memory limit may map it and take its first run back (<see cref="RetractRun"/>),
    /// and must leave mem_used_total as it found it.</summary>
    public long MetadataBytes => (long)(ArenaCount - Volatile.Read(ref _freshUntouched)) * PagesPerArena * sizeof(int);

    public void ResetPeak()
    {
        lock (_lock)
        {
            _peakPages = _pagesInUse;
        }
    }

    /// <summary>
    /// Takes a run of <paramref name="pages"/> contiguous pages and returns the global number of its first page.
    /// <paramref name="zeroed"/>: the run was never touched or was given back to the OS, so it reads as zeros and
    /// costs no RAM until written; it counts in <see cref="PagesInUse"/> only as the caller reports pages of it
    /// touched (<see cref="AddResident"/>). A warm run is resident already and counts in full at once.
    /// <paramref name="peak"/>: that made <see cref="PagesInUse"/> pass its peak. The caller tells its owner once it
    /// holds no lock (nothing is called back from here, so a callback that throws cannot leave anything half done).
    /// </summary>
    public int AllocateRun(int pages, out bool zeroed, out bool peak)
    {
        if ((uint)(pages - 1) >= MaxRunPages)
        {
            throw new ArgumentOutOfRangeException(nameof(pages), pages, $"A run is 1..{MaxRunPages} pages.");
        }

        peak = false;
        int head;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _runDemand[pages]++;
            // A warm run of the length asked for, else the front of a longer one (its rest stays warm).
            head = PopRun(_warmRunHead, pages);
            if (head == NoOwner)
            {
                head = SplitLongerRun(_warmRunHead, pages);
            }

            if (head != NoOwner)
            {
                _pagesWarm -= pages;
                _warmUsed = true;
                zeroed = false;
                peak = CountInUse(pages);
            }
            else
            {
                head = TakeColdRun(pages);
                zeroed = true;
            }
        }

        return head;
    }

    /// <summary><see cref="AllocateRun(int, out bool, out bool)"/> for a caller that does not watch the peak.</summary>
    public int AllocateRun(int pages, out bool zeroed) => AllocateRun(pages, out zeroed, out _);

    /// <summary>A run of given-back or never-touched pages (counted as its user touches them). Lock held.</summary>
    private int TakeColdRun(int pages)
    {
        int head = TakeListedRun(pages);
        if (head == NoOwner && _nextFreshPage + pages > _freshLimit)
        {
            // The newest arena is used up: its tail and the free runs joined may serve before another is mapped.
            ListFreshTail();
            if (_pagesFree >= pages && _listedSinceCoalesce >= _pagesFree / 2)
            {
                Coalesce();
                head = TakeListedRun(pages);
            }
        }

        if (head == NoOwner)
        {
            return TakeFresh(pages);
        }

        _pagesFree -= pages;
        return head;
    }

    /// <summary>A run off the free lists, the exact length or the front of a longer one, or <see cref="NoOwner"/>. Lock held.</summary>
    private int TakeListedRun(int pages)
    {
        int head = PopRun(_freeRunHead, pages);
        return head != NoOwner ? head : SplitLongerRun(_freeRunHead, pages);
    }

    /// <summary>
    /// Joins the free runs (given back, or an arena's fresh tail) that touch within an arena and lists them again cut into
    /// runs of <see cref="MaxRunPages"/> and the rest. Lock held. Linear in the free runs and the arenas that hold any
    /// (a bitmap of 2 KiB each, made for the pass), and run only when pages listed since the previous pass are at
    /// least half of those free: a few word operations for each page freed, a few hundred at worst (one free page in
    /// each of many arenas), however the lists look; never on the path of a free.
    /// </summary>
    /// <param name="emptied">Where to put the arenas found all free, which are then not listed again (the caller
    /// unmaps them); null: list them as any other.</param>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Coalesce(List<int>? emptied = null)
    {
        _listedSinceCoalesce = 0;
        // The newest arena's tail is not on the lists, and its index would be taken again at once.
        int fresh = _freshLimit > 0 ? (_freshLimit - 1) >> ArenaPageShift : -1;

        // Every bitmap before the first run leaves its list: an allocation that throws then loses no run.
        var free = new ulong[_arenaCount][];
        for (int arena = 0; arena < free.Length; arena++)
        {
            if (_freeInArena[arena] > 0)
            {
                free[arena] = new ulong[PagesPerArena / 64];
            }
        }

        for (int length = 1; length <= MaxRunPages; length++)
        {
            int head;
            while ((head = PopRun(_freeRunHead, length)) != NoOwner)
            {
                int arena = head >> ArenaPageShift;
                int first = head & (PagesPerArena - 1);
                // Its entry kept the list's link; a free page's entry is NoOwner.
                _owners[arena]![first] = NoOwner;
                ulong[] bits = free[arena]!;
                for (int page = first; page < first + length; page++)
                {
                    bits[page >> 6] |= 1UL << page;
                }
            }
        }

        for (int arena = 0; arena < free.Length; arena++)
        {
            ulong[]? bits = free[arena];
            if (bits == null)
            {
                continue;
            }

            if (emptied != null && arena != fresh && AllSet(bits))
            {
                // Popped, so already counted out of _freeInArena.
                emptied.Add(arena);
                continue;
            }

            int start = NextBit(bits, 0, set: true);
            while (start < PagesPerArena)
            {
                int end = NextBit(bits, start, set: false);
                for (int at = start; at < end; at += MaxRunPages)
                {
                    PushRun(_freeRunHead, (arena << ArenaPageShift) + at, Math.Min(MaxRunPages, end - at));
                }

                start = end < PagesPerArena ? NextBit(bits, end, set: true) : PagesPerArena;
            }
        }
    }

    /// <summary>
    /// Unmaps the arenas whose pages are all on the free lists (given back already), with their owner maps; returns how
    /// many. Their runs are taken off the lists by a join of all free runs (<see cref="Coalesce"/>), so only when the
    /// free count of some arena (<see cref="_freeInArena"/>, kept as runs are listed and taken) says it is all free:
    /// a look at one counter per arena otherwise. Compaction and the idle tick call it, never a request.
    /// </summary>
    public int ReleaseEmptyArenas()
    {
        var emptied = new List<int>();
        nint[] bases;
        lock (_lock)
        {
            if (_disposed || !AnyArenaAllFree())
            {
                return 0;
            }

            // Before any run leaves its list (as Coalesce's bitmaps): an allocation that throws then loses no run.
            bases = new nint[_arenaCount];
            emptied.Capacity = _arenaCount;
            Coalesce(emptied);
            for (int i = 0; i < emptied.Count; i++)
            {
                // Off every list (Coalesce did not list them again) and owned by no zspage: no one reads these now. The
                // base goes now, not after the munmap: a Dispose meanwhile must not unmap the range again (by then
                // perhaps another mapping's). So the index may serve at once (at the arena limit an allocation meanwhile
                // would find neither its pages nor an index): a new mapping cannot land on the old range before the
                // munmap below, which unmaps the base kept here.
                int arena = emptied[i];
                _owners[arena] = null;
                bases[i] = _arenaBase[arena];
                _arenaBase[arena] = 0;
                _releasedArenas[_releasedCount++] = arena;
                _pagesFree -= PagesPerArena;
                _arenasMapped--;
            }
        }

        for (int i = 0; i < emptied.Count; i++)
        {
            MemoryMap.Unmap(bases[i], ArenaBytes);
        }

        return emptied.Count;
    }

    /// <summary>Whether every page's bit is set. A loop, not Array.TrueForAll: no delegate made while runs are off
    /// their lists.</summary>
    private static bool AllSet(ulong[] bits)
    {
        foreach (ulong word in bits)
        {
            if (word != ulong.MaxValue)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Whether an arena other than the newest has every page on the free lists. Lock held.</summary>
    private bool AnyArenaAllFree()
    {
        int fresh = _freshLimit > 0 ? (_freshLimit - 1) >> ArenaPageShift : -1;
        for (int arena = 0; arena < _arenaCount; arena++)
        {
            if (_freeInArena[arena] == PagesPerArena && arena != fresh)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The first page at or after <paramref name="from"/> whose bit is <paramref name="set"/>, or
    /// <see cref="PagesPerArena"/>.</summary>
    private static int NextBit(ulong[] bits, int from, bool set)
    {
        int word = from >> 6;
        ulong w = (set ? bits[word] : ~bits[word]) & (ulong.MaxValue << from);
        while (w == 0)
        {
            if (++word == bits.Length)
            {
                return PagesPerArena;
            }

            w = set ? bits[word] : ~bits[word];
        }

        return (word << 6) + BitOperations.TrailingZeroCount(w);
    }

    /// <summary>Gives back pages of a run still in use that its user no longer needs written (they read as zeros again).
    /// Counted down only once the OS took them: if the madvise throws, nothing has changed.</summary>
    public void ReleasePages(int firstPage, int pages)
    {
        MemoryMap.Release(PageAddress(firstPage), (long)pages * PageSize);
        lock (_lock)
        {
            _pagesInUse -= pages;
        }
    }

    /// <summary>Counts pages of a zeroed run that its user has started to write (they are resident from now on).
    /// Returns whether <see cref="PagesInUse"/> passed its peak (the caller tells its owner, as for <see cref="AllocateRun(int, out bool, out bool)"/>).</summary>
    public bool AddResident(int pages)
    {
        lock (_lock)
        {
            return CountInUse(pages);
        }
    }

    /// <summary>
    /// Lists a freed run as warm (no syscall). When more than <see cref="WarmLimitPages"/> are warm, the caller
    /// gives half of them back to the OS in one burst, runs that touch in one madvise call.
    /// <paramref name="resident"/>: the pages of it counted in use (all of a warm run; those written of a zeroed one).
    /// A run not written to its end goes back to the OS at once instead, so that every warm run is resident in full,
    /// as <see cref="AllocateRun"/> counts it when it is reused.
    /// </summary>
    public void FreeRun(int head, int pages, int resident)
    {
        CheckRun(head, pages);
        SetOwner(head, pages, NoOwner);
        if (resident < pages)
        {
            lock (_lock)
            {
                _pagesInUse -= resident;
            }

            Span<PageRun> run = [new PageRun(head, pages, resident)];
            ReleaseToOs(run);
            return;
        }

        bool trim;
        lock (_lock)
        {
            PushRun(_warmRunHead, head, pages);
            _pagesWarm += pages;
            _warmUsed = true;
            _pagesInUse -= resident;
            trim = _pagesWarm > _warmLimit;
        }

        if (trim)
        {
            TrimWarm(_warmLimit / 2);
        }
    }

    /// <summary>Gives the warm runs back to the OS too.</summary>
    public void ReleaseWarm() => TrimWarm(0);

    /// <summary>
    /// Gives the warm runs back to the OS if none was freed or reused since the previous call (the pool is idle);
    /// returns the pages released. Called periodically, so an idle pool keeps no warm pages for long.
    /// </summary>
    public int ReleaseWarmIfUnused()
    {
        int warm;
        lock (_lock)
        {
            if (_warmUsed)
            {
                _warmUsed = false;
                return 0;
            }

            warm = _pagesWarm;
        }

        if (warm > 0)
        {
            TrimWarm(0);
        }

        ReleaseEmptyArenas();
        return warm;
    }

    /// <summary>
    /// <see cref="FreeRun"/> for many runs at once (compaction frees zspages in bursts): they go back to the OS
    /// at once, runs that touch in one madvise call.
    /// </summary>
    public void FreeRuns(Span<PageRun> runs)
    {
        long total = 0;
        foreach (PageRun run in runs)
        {
            CheckRun(run.Head, run.Pages);
            SetOwner(run.Head, run.Pages, NoOwner);
            total += run.Resident;
        }

        lock (_lock)
        {
            _pagesInUse -= total;
        }

        ReleaseToOs(runs);
    }

    /// <summary>Takes warm runs off their lists until at most <paramref name="keep"/> pages stay warm, and releases
    /// them, <see cref="TrimBatchRuns"/> runs per batch. The lengths least asked for since the previous trim go
    /// first (<see cref="_runDemand"/>, halved at each trim), the longest first among equals: a burst of frees
    /// that overflows the warm lists is mostly of the lengths the pool keeps allocating (the same size classes
    /// refilled), and trimming by length alone gave those back for the next writes to fault in again.</summary>
    private void TrimWarm(int keep)
    {
        Span<PageRun> runs = stackalloc PageRun[TrimBatchRuns];
        Span<byte> order = stackalloc byte[MaxRunPages];
        lock (_lock)
        {
            for (int i = 0; i < MaxRunPages; i++)
            {
                order[i] = (byte)(MaxRunPages - i);
            }

            // Insertion sort of 16 lengths by demand, stable, so equal demand keeps the longest first.
            for (int i = 1; i < MaxRunPages; i++)
            {
                byte length = order[i];
                int j = i - 1;
                while (j >= 0 && _runDemand[order[j]] > _runDemand[length])
                {
                    order[j + 1] = order[j];
                    j--;
                }

                order[j + 1] = length;
            }

            for (int pages = 1; pages <= MaxRunPages; pages++)
            {
                _runDemand[pages] >>= 1;
            }
        }

        int count;
        do
        {
            count = 0;
            lock (_lock)
            {
                for (int i = 0; i < MaxRunPages && _pagesWarm > keep && count < runs.Length; i++)
                {
                    int pages = order[i];
                    int head;
                    while (_pagesWarm > keep && count < runs.Length && (head = PopRun(_warmRunHead, pages)) != NoOwner)
                    {
                        runs[count++] = new PageRun(head, pages, Resident: 0);
                        _pagesWarm -= pages;
                    }
                }
            }

            ReleaseToOs(runs[..count]);
        }
        while (count == runs.Length);
    }

    /// <summary>madvise(MADV_DONTNEED) over runs that are on no list (coalescing neighbours), then lists them as free.</summary>
    private void ReleaseToOs(Span<PageRun> runs)
    {
        if (runs.IsEmpty)
        {
            return;
        }

        if (runs.Length > 1)
        {
            // Not for one run (a partly written zspage freed on the hot path): the sort's first use allocates.
            runs.Sort(static (a, b) => a.Head.CompareTo(b.Head));
        }
        int start = 0;
        for (int i = 1; i <= runs.Length; i++)
        {
            PageRun last = runs[i - 1];
            bool touches = i < runs.Length && runs[i].Head == last.Head + last.Pages
                && (runs[i].Head >> ArenaPageShift) == (last.Head >> ArenaPageShift);
            if (!touches)
            {
                int first = runs[start].Head;
                MemoryMap.Release(PageAddress(first), (long)(last.Head + last.Pages - first) * PageSize);
                start = i;
            }
        }

        long total = 0;
        lock (_lock)
        {
            foreach (PageRun run in runs)
            {
                PushRun(_freeRunHead, run.Head, run.Pages);
                total += run.Pages;
            }

            _pagesFree += total;
            _listedSinceCoalesce += total;
        }
    }

    /// <summary>The address of a global page number. The page's arena exists (callers got it from this source).
    /// In bounds: the arena base comes from a managed (bounds-checked) array and the page is masked into it.</summary>
    public nint PageAddress(int page) => _arenaBase[page >> ArenaPageShift] + ((nint)(page & (PagesPerArena - 1)) << PageShift);

    /// <summary>The address of a global byte location (page number * 4096 + offset). In bounds as
    /// <see cref="PageAddress"/>: arena from a checked array, offset masked below the arena's size.</summary>
    public byte* Address(long location) =>
        (byte*)_arenaBase[(int)(location >> ArenaByteShift)] + (location & (ArenaBytes - 1));

    public void SetOwner(int head, int pages, int owner)
    {
        int[] map = _owners[head >> ArenaPageShift]!;
        Array.Fill(map, owner, head & (PagesPerArena - 1), pages);
    }

    public int OwnerOf(int page) => _owners[page >> ArenaPageShift]![page & (PagesPerArena - 1)];

    /// <summary>Where <see cref="OwnerOf"/> reads the page's owner, for a prefetch only (the map is a managed array: the
    /// address is good only as long as the GC does not move it, and a stale one is harmless to a prefetch). Null when
    /// the page's arena was released: a prefetch's location is read racily, and its object may have been moved
    /// and its arena emptied since.</summary>
    public void* OwnerAddress(int page)
    {
        int[]? map = Volatile.Read(ref _owners[page >> ArenaPageShift]);
        return map is null ? null : Unsafe.AsPointer(ref map[page & (PagesPerArena - 1)]);
    }

    /// <summary><see cref="OwnerOf"/> for a prefetch: <see cref="NoOwner"/> when the page's arena was released (as
    /// <see cref="OwnerAddress"/>).</summary>
    public int OwnerForPrefetch(int page)
    {
        int[]? map = Volatile.Read(ref _owners[page >> ArenaPageShift]);
        return map is null ? NoOwner : map[page & (PagesPerArena - 1)];
    }

    /// <summary>One past the highest arena index ever mapped: a location at or past it names no arena. Below it, the
    /// arena may have been released (<see cref="ReleaseEmptyArenas"/>); its base then reads 0.</summary>
    public int ArenaIndexLimit => Volatile.Read(ref _arenaCount);

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            for (int i = 0; i < _arenaCount; i++)
            {
                if (_arenaBase[i] != 0)
                {
                    MemoryMap.Unmap(_arenaBase[i], ArenaBytes);
                    _arenaBase[i] = 0;
                }
            }

            _pagesInUse = 0;
            _pagesFree = 0;
        }
    }

    /// <summary>Lock held. Returns whether the pages in use passed their peak.</summary>
    private bool CountInUse(int pages)
    {
        _pagesInUse += pages;
        if (_pagesInUse > _peakPages)
        {
            _peakPages = _pagesInUse;
            return true;
        }

        return false;
    }

    private void CheckRun(int head, int pages)
    {
        if ((uint)(pages - 1) >= MaxRunPages || head < 0 || (head >> ArenaPageShift) >= Volatile.Read(ref _arenaCount)
            || _owners[head >> ArenaPageShift] == null || (head & (PagesPerArena - 1)) + pages > PagesPerArena)
        {
            throw new ArgumentOutOfRangeException(nameof(head), head, "Not a run of this page source.");
        }
    }

    private int PopRun(int[] heads, int pages)
    {
        int head = heads[pages];
        if (head != NoOwner)
        {
            // A free run's head keeps the next run's head in its owner entry, encoded as -2 - next (-1 = end).
            heads[pages] = -2 - OwnerOf(head);
            if (heads == _freeRunHead)
            {
                _freeInArena[head >> ArenaPageShift] -= pages;
            }
        }

        return head;
    }

    private void PushRun(int[] heads, int head, int pages)
    {
        _owners[head >> ArenaPageShift]![head & (PagesPerArena - 1)] = -2 - heads[pages];
        heads[pages] = head;
        if (heads == _freeRunHead)
        {
            _freeInArena[head >> ArenaPageShift] += pages;
        }
    }

    /// <summary>The front <paramref name="pages"/> of the shortest longer run on <paramref name="heads"/>; the rest
    /// goes back on the same lists.</summary>
    private int SplitLongerRun(int[] heads, int pages)
    {
        for (int longer = pages + 1; longer <= MaxRunPages; longer++)
        {
            int head = PopRun(heads, longer);
            if (head != NoOwner)
            {
                PushRun(heads, head + pages, longer - pages);
                return head;
            }
        }

        return NoOwner;
    }

    private int TakeFresh(int pages)
    {
        if (_nextFreshPage + pages > _freshLimit)
        {
            ListFreshTail();
            MapArena();
        }

        int head = _nextFreshPage;
        _nextFreshPage += pages;
        Volatile.Write(ref _freshUntouched, 0);
        return head;
    }

    /// <summary>
    /// Frees a run its user took and gives back at once (a write refused at the memory limit): as <see cref="FreeRun"/>,
    /// but the newest run carved from the newest arena goes back to its fresh tail (given back to the OS first, so it is
    /// zeroed again), and an arena left untouched so stops counting in <see cref="MetadataBytes"/>: what the refused
    /// allocation took all goes back, and a page freed makes room for a page again.
    /// </summary>
    public void RetractRun(int head, int pages, int resident)
    {
        CheckRun(head, pages);
        lock (_lock)
        {
            if (head + pages == _nextFreshPage && head >= _freshLimit - PagesPerArena)
            {
                // Under the lock (a refused write's path, not a request's): no allocation may carve these pages before
                // they read as zeros again. First, so that a failure changes nothing.
                MemoryMap.Release(PageAddress(head), (long)pages * PageSize);
                SetOwner(head, pages, NoOwner);
                _pagesInUse -= resident;
                _nextFreshPage = head;
                if (head == _freshLimit - PagesPerArena)
                {
                    Volatile.Write(ref _freshUntouched, 1);
                }

                return;
            }
        }

        FreeRun(head, pages, resident);
    }

    /// <summary>
    /// The newest arena's tail, too short for the run asked for, becomes a free run (never touched, so it costs no RSS).
    /// Consumed as it is listed, before any mapping, which may throw: a retry must not list the same run twice (a list
    /// linked to itself). Lock held.
    /// </summary>
    private void ListFreshTail()
    {
        int tail = _freshLimit - _nextFreshPage;
        if (tail > 0)
        {
            PushRun(_freeRunHead, _nextFreshPage, tail);
            _pagesFree += tail;
            _listedSinceCoalesce += tail;
            _nextFreshPage = _freshLimit;
        }
    }

    /// <summary>Maps an arena at a released index if there is one, else at a new one; changes nothing if it throws. Lock held.</summary>
    private void MapArena()
    {
        bool reuse = _releasedCount > 0;
        int arena = reuse ? _releasedArenas[_releasedCount - 1] : _arenaCount;
        if (arena == MaxArenas)
        {
            throw new OutOfMemoryException($"The pool has reached its limit of {MaxArenas} arenas of {ArenaBytes >> 20} MiB.");
        }

        nint address = MemoryMap.Map(ArenaBytes);
        var owners = new int[PagesPerArena];
        Array.Fill(owners, NoOwner);
        _arenaBase[arena] = address;
        Volatile.Write(ref _owners[arena], owners);
        if (reuse)
        {
            _releasedCount--;
        }
        else
        {
            Volatile.Write(ref _arenaCount, arena + 1);
        }

        Volatile.Write(ref _arenasMapped, _arenasMapped + 1);
        Volatile.Write(ref _freshUntouched, 1);
        _nextFreshPage = arena << ArenaPageShift;
        _freshLimit = (arena + 1) << ArenaPageShift;
    }
}
