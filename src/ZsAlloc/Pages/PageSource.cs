using ZsAlloc.Native;
using ZsAlloc.SizeClasses;

namespace ZsAlloc.Pages;

/// <summary>
/// Where zspage pages come from. Pages are carved out of 64 MiB anonymous mappings (arenas), never one mapping
/// per zspage: Linux allows only vm.max_map_count (65530) mappings per process. A zspage gets a run of
/// 1..16 virtually contiguous pages of one arena, so an object that crosses a page boundary is still one
/// contiguous range of bytes. A freed run is given back to the OS at once with MADV_DONTNEED (RSS falls, the
/// address range stays mapped) and kept on a free list per run length for reuse; a longer free run is split
/// when no run of the exact length is free, and fresh pages are taken from the newest arena last.
///
/// Page numbers are global: arena index * 16384 + page within the arena. An object's location is its global
/// byte offset (page number * 4096 + offset), 38 bits for the 4096 arenas (256 GiB) allowed.
///
/// The owner map (4 bytes a page) says which zspage holds each page, so a handle's location leads to its
/// zspage descriptor. Head pages of free runs reuse their owner entry as the free-list link.
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

    private readonly nint[] _arenaBase = new nint[MaxArenas];
    private readonly int[]?[] _owners = new int[MaxArenas][];
    private readonly int[] _freeRunHead = new int[MaxRunPages + 1];
    private readonly Lock _lock = new();
    private int _arenaCount;
    private int _nextFreshPage;
    private int _freshLimit;
    private long _pagesInUse;
    private long _peakPages;
    private long _pagesFree;
    private bool _disposed;

    public PageSource()
    {
        if (Environment.SystemPageSize != PageSize)
        {
            throw new PlatformNotSupportedException($"The pool needs 4 KiB pages; this system uses {Environment.SystemPageSize}.");
        }

        Array.Fill(_freeRunHead, NoOwner);
    }

    /// <summary>Pages held by zspages now (zs_get_total_pages).</summary>
    public long PagesInUse => Volatile.Read(ref _pagesInUse);

    public long PeakPages => Volatile.Read(ref _peakPages);

    /// <summary>Pages of mapped arenas that are on the free lists (already given back to the OS).</summary>
    public long PagesFree => Volatile.Read(ref _pagesFree);

    public int ArenaCount => Volatile.Read(ref _arenaCount);

    /// <summary>The owner maps: 4 bytes for every page of every arena.</summary>
    public long MetadataBytes => (long)ArenaCount * PagesPerArena * sizeof(int);

    public void ResetPeak()
    {
        lock (_lock)
        {
            _peakPages = _pagesInUse;
        }
    }

    /// <summary>Takes a run of <paramref name="pages"/> contiguous pages and returns the global number of its first page.</summary>
    public int AllocateRun(int pages)
    {
        if ((uint)(pages - 1) >= MaxRunPages)
        {
            throw new ArgumentOutOfRangeException(nameof(pages), pages, $"A run is 1..{MaxRunPages} pages.");
        }

        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            int head = PopRun(pages);
            if (head == NoOwner)
            {
                head = SplitLongerRun(pages);
            }

            if (head == NoOwner)
            {
                head = TakeFresh(pages);
            }
            else
            {
                _pagesFree -= pages;
            }

            _pagesInUse += pages;
            if (_pagesInUse > _peakPages)
            {
                _peakPages = _pagesInUse;
            }

            return head;
        }
    }

    /// <summary>Gives a run's pages back to the OS and puts the run on its free list.</summary>
    public void FreeRun(int head, int pages)
    {
        if ((uint)(pages - 1) >= MaxRunPages || head < 0 || (head >> ArenaPageShift) >= ArenaCount
            || (head & (PagesPerArena - 1)) + pages > PagesPerArena)
        {
            throw new ArgumentOutOfRangeException(nameof(head), head, "Not a run of this page source.");
        }

        // The syscall runs outside the lock; nobody else can use these pages until they are on a free list.
        MemoryMap.Release(PageAddress(head), (long)pages * PageSize);
        SetOwner(head, pages, NoOwner);
        lock (_lock)
        {
            PushRun(head, pages);
            _pagesFree += pages;
            _pagesInUse -= pages;
        }
    }

    /// <summary>The address of a global page number. The page's arena exists (callers got it from this source).</summary>
    public nint PageAddress(int page) => _arenaBase[page >> ArenaPageShift] + ((nint)(page & (PagesPerArena - 1)) << PageShift);

    /// <summary>The address of a global byte location (page number * 4096 + offset).</summary>
    public byte* Address(long location) =>
        (byte*)_arenaBase[(int)(location >> ArenaByteShift)] + (location & (ArenaBytes - 1));

    public void SetOwner(int head, int pages, int owner)
    {
        int[] map = _owners[head >> ArenaPageShift]!;
        Array.Fill(map, owner, head & (PagesPerArena - 1), pages);
    }

    public int OwnerOf(int page) => _owners[page >> ArenaPageShift]![page & (PagesPerArena - 1)];

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
                MemoryMap.Unmap(_arenaBase[i], ArenaBytes);
                _arenaBase[i] = 0;
            }

            _pagesInUse = 0;
            _pagesFree = 0;
        }
    }

    private int PopRun(int pages)
    {
        int head = _freeRunHead[pages];
        if (head != NoOwner)
        {
            // A free run's head keeps the next run's head in its owner entry, encoded as -2 - next (-1 = end).
            _freeRunHead[pages] = -2 - OwnerOf(head);
        }

        return head;
    }

    private void PushRun(int head, int pages)
    {
        _owners[head >> ArenaPageShift]![head & (PagesPerArena - 1)] = -2 - _freeRunHead[pages];
        _freeRunHead[pages] = head;
    }

    private int SplitLongerRun(int pages)
    {
        for (int longer = pages + 1; longer <= MaxRunPages; longer++)
        {
            int head = PopRun(longer);
            if (head != NoOwner)
            {
                PushRun(head + pages, longer - pages);
                return head;
            }
        }

        return NoOwner;
    }

    private int TakeFresh(int pages)
    {
        if (_nextFreshPage + pages > _freshLimit)
        {
            // The newest arena's tail is too short: keep it as a free run (never touched, so it costs no RSS).
            int tail = _freshLimit - _nextFreshPage;
            if (tail > 0)
            {
                PushRun(_nextFreshPage, tail);
                _pagesFree += tail;
            }

            MapArena();
        }

        int head = _nextFreshPage;
        _nextFreshPage += pages;
        return head;
    }

    private void MapArena()
    {
        int arena = _arenaCount;
        if (arena == MaxArenas)
        {
            throw new OutOfMemoryException($"The pool has reached its limit of {MaxArenas} arenas of {ArenaBytes >> 20} MiB.");
        }

        nint address = MemoryMap.Map(ArenaBytes);
        var owners = new int[PagesPerArena];
        Array.Fill(owners, NoOwner);
        _arenaBase[arena] = address;
        Volatile.Write(ref _owners[arena], owners);
        Volatile.Write(ref _arenaCount, arena + 1);
        _nextFreshPage = arena << ArenaPageShift;
        _freshLimit = (arena + 1) << ArenaPageShift;
    }
}
