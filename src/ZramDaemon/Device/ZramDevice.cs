using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Nbd.Devices;
using ZramDaemon.Compression;
using ZramDaemon.Device.Dedup;
using ZramDaemon.Device.Recompression;
using ZramDaemon.Device.Writeback;
using ZsAlloc;

namespace ZramDaemon.Device;

/// <summary>
/// A compressed RAM block device, after the kernel's drivers/block/zram/zram_drv.c, served through NBD.
///
/// Data structure
///   The device is <see cref="SlotTable"/>: one 8-byte <see cref="Slot"/> per 4 KiB block (a 32-bit pool handle and
///   a 32-bit info word whose top bit is the slot's lock). A slot is unwritten (reads as zeros), same-filled (one
///   8-byte value repeated: nothing for zeros, the value in the slot when its halves are equal, else in a pool word, a
///   handle cell with no object),
///   compressed (a <see cref="ZsPool"/> object of the compressed size, with the algorithm recorded in the slot), or
///   huge (did not compress below the pool's huge class size: the raw 4096 bytes in a pool object).
///
/// Write path (per slot): detect same-filled; else compress with this CPU's stream (<see cref="Compressor"/>),
///   allocate and copy into the pool, then, under the slot's lock, swap the slot and hand the old object to the
///   pool's deferred-free queue. Compression and allocation run outside the slot lock, as in the kernel.
///   A write that covers part of a slot (the kernel may use 512-byte blocks) is a read-modify-write done entirely
///   under the slot lock, so concurrent partial writes into one slot never lose each other's bytes.
/// Read path: under the slot lock, decompress straight from the pool's mapping into the reply buffer;
///   unwritten, trimmed and same-filled slots are filled without touching the pool.
///
/// Memory limit: mem_used_total (pool pages + slot table + pool metadata) must stay at or below mem_limit.
///   A write whose allocation passes it flushes the deferred frees, compacts and retries once; if still over,
///   it fails with ENOSPC and the slot keeps its old contents. The deferred-free queue asks before it counts another
///   page of entries (<see cref="RoomWithinLimit"/>): queueing happens after the check, or with none (trims). A background thread (<see cref="BackgroundCompactor"/>)
///   compacts when usage passes the watermark of the limit, or when compaction could free enough pages.
///   The deferred-free queue may hold at most half the room between the watermark and the limit in objects
///   (<see cref="ZsPool.DeferredFreeByteBudget"/>); past that, frees are synchronous until it drains.
///
/// Recompression (zram's recompress): slots idle for a while, or huge, are decompressed and compressed again
///   with a stronger secondary algorithm (the lock held to decompress and to swap, not to compress: see
///   <see cref="RecompressSlot"/>); the result replaces the object only when it lands in a smaller size class. Idleness is a 2-bit age in the slot that aging passes
///   raise and reads and writes reset (<see cref="Recompressor"/> runs both in the background, at low priority).
///
/// Writeback (zram's backing_dev, to a file): a slot's object can move to a block of the device's
///   <see cref="BackingFile"/> (the slot keeps the block number), freeing its pool memory; reads of it read the block.
///   The background thread writes back idle, then huge, then the least recently touched slots when usage passes the
///   writeback watermark of the limit; a write that would pass the limit first writes back a slot of the size class
///   it needs (taking that slot's lock only if it is free, since it may hold its own).
///
/// Deduplication (optional): with it, every stored object is an entry of <see cref="DedupIndex"/> (keyed by the
///   CRC32C of its page, with a reference count) and slots hold entry ids. A write looks for an entry of the same hash
///   whose page decompresses to the same bytes and refers to it instead of compressing and storing its own object.
///   Recompression and writeback take a deduplicated slot only when no other slot shares its entry: it leaves the
///   index first, and the slot holds the object itself. So does a new page when the index's arrays would have to
///   grow past the memory limit (they count in mem_used_total).
///
/// Locks: a slot lock is a leaf for the device; the pool's locks (taken by Malloc, FreeDeferred, Compact) and the dedup
///   index's lock (under which the pool's may be taken) may be taken while one slot lock is held, never the other way, and no thread holds two slot locks.
///   A writeback run's turn (its batch) is taken before any slot lock, and a batch's write and wait hold no slot lock;
///   a reset takes the recompression lock, then the writeback turn.
///   A pool read view (MapRead) is always closed before anything that can compact. A compression stream
///   (<see cref="Compressor.Acquire"/>; zstd needs one, or a decoder of the compressor's own, to decompress) is taken last: under a slot lock or the dedup
///   lock, and a thread holding one waits for neither (it may only try a slot's lock), so output that must outlive
///   the stream is copied out first.
/// </summary>
[SkipLocalsInit]
public sealed class ZramDevice : IBlockDevice, IDisposable
{
    public const int PageSize = 4096;

    /// <summary>The largest disksize: one slot per page, in one array of at most Array.MaxLength (0x7FFFFFC7)
    /// elements; 8 TiB less 228 KiB. The configuration refuses more, naming the key.</summary>
    public const long MaxDiskSize = 0x7FFFFFC7L * PageSize;

    /// <summary>The recompression dictionary's size bounds (zstd's own minimum is 256 bytes; past 4 MiB gains little).</summary>
    public const int MinDictionarySize = 4096;
    public const int MaxDictionarySize = 4 << 20;

    /// <summary>Pages a dictionary is trained from: at least this many idle pages (else pages go without one)...</summary>
    private const int MinDictionarySamples = 256;

    /// <summary>...and at most this many times the dictionary's size of them (zstd suggests about 100 times).</summary>
    private const int DictionarySampleFactor = 64;

    private const int PageShift = 12;
    private const int PageMask = PageSize - 1;

    // Background compaction by threshold while writes flow (CompactionDue): at most every this many ticks. The first
    // such compaction runs at once.
    private const int BusyCompactionTicks = 30;

    // Metadata that the data left behind (handle cells, an emptied dedup index) worth a compaction of an idle device.
    private const long IdleMetadataToShrink = 1 << 20;

    // How often a recompress verb waiting for another run's turn looks whether the daemon is stopping (ms).
    private const int StopCheckInterval = 50;

    private readonly ZramDeviceOptions _options;
    private readonly ZsPool _pool;
    private readonly SlotTable _slots;
    private readonly Compressor?[] _decompressors = new Compressor?[4];
    private readonly List<Compressor> _allCompressors = [];
    private readonly Lock _compressorsLock = new();
    private readonly DeviceCounters _counters = new();
    private readonly BackgroundCompactor _compactor;
    private readonly Action _moveHandlesBelowMark;
    private readonly Compressor? _secondary;
    private readonly Recompressor? _recompressor;
    /// <summary>Held by whoever recompresses (one at a time) and by Reset while it drops the dictionary.</summary>
    private readonly Lock _recompressLock = new();

    // A background recompression pass began (RecompressSlice at cursor 0) and has not reached the end; under _recompressLock.
    private bool _slicedPassOpen;

    // A compaction found the dictionary unused during an open pass, which drops it at its end if still unused; under _recompressLock.
    private bool _dropDictionaryAfterPass;
    private ZstdDictionary? _dictionary;
    private Compressor? _dictionaryCompressor;
    private readonly BackingFile? _backing;
    /// <summary>Held by a writeback run (one at a time; the background's only tries) while it uses <see cref="_writebackBatch"/>.</summary>
    private readonly Lock _writebackTurn = new();
    private WritebackBatch? _writebackBatch; // made at the first run
    private bool _writebackVerbRunning; // the turn is a verb's (Writeback): the background's run does not wait for it
    private readonly DedupIndex? _dedup;
    private int _writebackCursor;
    private static readonly TimeSpan FailureReportInterval = TimeSpan.FromSeconds(10);
    private long _writebackFailureReported; // the timestamp of the last failed write logged, 0: none yet
    private long _writebackFailuresUnreported;
    private string? _lastWritebackError;
    private readonly ILogger<ZramDevice> _logger;
    private readonly int _maxCompressedSize;
    private volatile Compressor _compressor;
    private long _memLimit;
    private long _futileLimitCompaction;

    // mem_used_max: the highest mem_used_total noted, at each new peak of the pool's pages, at each allocation the
    // limit checks and each word stored (TryAllocateWithin), and at each read of the stats. Pages and metadata rise and
    // fall apart (a discard and compaction give back handle cells; a same-filled page's word takes a cell and no page),
    // so peak pages plus the metadata of now fell below a total already reported, and could exceed any there ever was.
    private long _memUsedMax;

    private long _allocatedAtLastTick;
    private long _handleCellsAfterCompaction;
    private int _ticksSinceBusyCompaction = BusyCompactionTicks;
    private bool _disposed;

    public ZramDevice(ZramDeviceOptions options, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        if (options.DiskSize <= 0 || (options.DiskSize & PageMask) != 0)
        {
            throw new ArgumentException($"disksize must be a positive multiple of {PageSize} bytes, not {options.DiskSize}", nameof(options));
        }

        if (options.DiskSize > MaxDiskSize)
        {
            throw new ArgumentException($"disksize {options.DiskSize} is too large: at most {MaxDiskSize} bytes", nameof(options));
        }

        if (options.MemLimit < 0)
        {
            throw new ArgumentException($"mem_limit must be 0 (none) or a number of bytes, not {options.MemLimit}", nameof(options));
        }

        long minimumLimit = MinimumMemLimitFor(options.DiskSize, options.Dedup);
        long memLimit = RoundMemLimit(options.MemLimit);
        if (memLimit != 0 && memLimit < minimumLimit)
        {
            throw new ArgumentException($"mem_limit {options.MemLimit} is below the device's minimum of {minimumLimit} bytes", nameof(options));
        }

        if (options.CompactWatermarkPercent is < 1 or > 100)
        {
            throw new ArgumentException($"the compaction watermark must be 1-100 percent of mem_limit, not {options.CompactWatermarkPercent}", nameof(options));
        }

        if (!CompressionSpec.TryParse(options.Algorithm, out CompressionSpec spec, out string error))
        {
            throw new ArgumentException(error, nameof(options));
        }

        CompressionSpec secondarySpec = default;
        if (options.RecompressAlgorithm is not null && !CompressionSpec.TryParse(options.RecompressAlgorithm, out secondarySpec, out error))
        {
            throw new ArgumentException($"recompression: {error}", nameof(options));
        }

        if (options.WritebackWatermarkPercent is < 1 or > 100)
        {
            throw new ArgumentException($"the writeback watermark must be 1-100 percent of mem_limit, not {options.WritebackWatermarkPercent}", nameof(options));
        }

        if (options.RecompressDictionarySize != 0
            && (options.RecompressAlgorithm is null || secondarySpec.Algorithm != CompressionAlgorithm.Zstd
                || options.RecompressDictionarySize is < MinDictionarySize or > MaxDictionarySize))
        {
            throw new ArgumentException($"a recompression dictionary needs a zstd recompression algorithm and {MinDictionarySize}-{MaxDictionarySize} bytes, not {options.RecompressDictionarySize} with {options.RecompressAlgorithm ?? "none"}", nameof(options));
        }

        if (options.RecompressCpuPercent is < 1 or > 100)
        {
            throw new ArgumentException($"the recompressor's CPU budget must be 1-100 percent, not {options.RecompressCpuPercent}", nameof(options));
        }

        _options = options;
        _logger = loggerFactory.CreateLogger<ZramDevice>();
        _slots = new SlotTable(options.DiskSize >> PageShift);
        try
        {
            _pool = new ZsPool(new ZsPoolOptions { Name = options.Name, DeferredFreeCapacity = DeferredFreeCapacity(options) },
                loggerFactory.CreateLogger<ZsPool>());
            // Compressed output must be below the huge class size to be worth storing compressed (the kernel's huge_class_size).
            _maxCompressedSize = _pool.HugeClassSize - 1;
            _compressor = new Compressor(spec);
            _decompressors[(int)spec.Algorithm] = _compressor;
            _allCompressors.Add(_compressor);
            if (options.RecompressAlgorithm is not null)
            {
                // One stream is enough: recompression runs on one thread at a time (background or on request). When it
                // decodes the algorithm's pages it has a decoder per CPU besides, so that a read of them waits neither for
                // the recompressor (milliseconds a page at zstd:19) nor for other such reads.
                bool decodes = _decompressors[(int)secondarySpec.Algorithm] is null;
                _secondary = new Compressor(secondarySpec, streamCount: 1, decoderCount: decodes ? Environment.ProcessorCount : 0);
                _allCompressors.Add(_secondary);
                _decompressors[(int)secondarySpec.Algorithm] ??= _secondary;
            }

            _memLimit = memLimit;
            _pool.DeferredFreeByteBudget = DeferredFreeBudget(memLimit);
            _pool.WarmLimitBytes = DeferredFreeBudget(memLimit);
            _pool.DeferredGrowthAllowed = RoomWithinLimit;
            _pool.PeakPagesRaised = NotePagePeak;
            _dedup = options.Dedup ? new DedupIndex() : null;
            if (options.BackingFile is not null)
            {
                // One block per slot: a slot holds at most one, so the file never fills before the device does; and one
                // for each slot a writeback batch may hold, whose block it gives back only once it sees that the write
                // path wrote the slot back meanwhile (to a block of its own).
                _backing = new BackingFile(options.BackingFile, (long)_slots.Count + WritebackBatch.Capacity, options.WritebackLimitPerDay);
            }

            _moveHandlesBelowMark = MoveHandlesBelowMark;
            _compactor = new BackgroundCompactor(this, options.CompactInterval, _logger);
            if (_secondary is not null && options.RecompressIdleAfter > TimeSpan.Zero)
            {
                _recompressor = new Recompressor(this, options.RecompressIdleAfter, options.RecompressCpuPercent, _logger);
            }
        }
        catch
        {
            // The caller never gets the device to dispose (a backing file that cannot be opened, say): free the pool,
            // the compressors' native streams and the threads started so far here.
            Dispose();
            throw;
        }

        ZramDeviceLog.Created(_logger, options.Name, options.DiskSize, _slots.Count, spec.ToString(), memLimit);
        if (_backing is { Unmarked: true })
        {
            ZramDeviceLog.BackingFileUnmarked(_logger, options.Name, _backing.Path);
        }

        if (_backing is { PunchesHoles: false })
        {
            ZramDeviceLog.BackingFileNoHoles(_logger, options.Name, _backing.Path);
        }
    }

    public string Name => _options.Name;

    /// <summary>The compressor new writes use, in canonical form ("lz4", "lz4hc:9", "zstd:3").</summary>
    public string Algorithm => _compressor.Spec.ToString();

    /// <summary>zram's backing_dev: the full path of the device's backing file, or null without writeback.</summary>
    public string? BackingFilePath => _backing?.Path;

    /// <summary>zram's recomp_algorithm in canonical form, or null when the device has none.</summary>
    public string? RecompressAlgorithm => _secondary?.Spec.ToString();

    public long Size => _options.DiskSize;

    public bool IsReadOnly => _options.ReadOnly;

    /// <summary>The kernel's zram logical block size; smaller and unaligned I/O still works (read-modify-write).</summary>
    public int MinimumBlockSize => 512;

    /// <summary>Any offset and length: part of a page is a read-modify-write under the slot lock.</summary>
    public bool AcceptsAnyAlignment => true;

    public int PreferredBlockSize => PageSize;

    public bool SupportsFastZero => true;

    /// <summary>The pool's zs_huge_class_size: objects of this many bytes or more are stored raw, a page each.</summary>
    public int HugeClassSize => _pool.HugeClassSize;

    /// <summary>The smallest mem_limit but 0 (none) this device takes: see <see cref="MinimumMemLimitFor"/>.</summary>
    public long MinimumMemLimit => MinimumMemLimitFor(_options.DiskSize, _options.Dedup);

    /// <summary>
    /// The smallest mem_limit but 0 (none) for a device of <paramref name="diskSize"/> bytes: what it takes when empty
    /// (the slot table, 8 bytes a page; the pool's pin counters; the dedup index's first arrays), plus what storing its
    /// first page adds (<see cref="ZsPool.FirstObjectBytes"/>: a page and the 64 KiB page map of its arena). A lower
    /// limit refuses every write but a same-filled page's with ENOSPC, and nothing says why; at this one a page fits.
    /// </summary>
    public static long MinimumMemLimitFor(long diskSize, bool dedup) =>
        ((diskSize >> PageShift) * SlotTable.SlotSize) + ZsPool.EmptyMetadataBytes + (dedup ? DedupIndex.InitialMetadataBytes : 0) + ZsPool.FirstObjectBytes;

    /// <summary>mem_used_total: pool pages, the slot table, and the pool's metadata (handle and word cells among it).</summary>
    public long MemUsedTotal => (_pool.TotalPages << PageShift) + MetadataBytes;

    private long MetadataBytes => _slots.Bytes + _pool.MetadataBytes + DeviceMetadataBytes;

    /// <summary>What the device holds besides the slot table and the pool: the dedup index and the dictionary.</summary>
    private long DeviceMetadataBytes => (_dedup?.MetadataBytes ?? 0) + (Volatile.Read(ref _dictionary)?.MemoryBytes ?? 0);

    public NbdError Read(long offset, Span<byte> destination)
    {
        if (!InRange(offset, destination.Length))
        {
            return Refuse();
        }

        while (!destination.IsEmpty)
        {
            int index = (int)(offset >> PageShift);
            int inPage = (int)(offset & PageMask);
            int n = Math.Min(PageSize - inPage, destination.Length);
            if (destination.Length - n >= PageSize)
            {
                PrefetchObject(index + 1);
            }

            NbdError error = n == PageSize ? ReadPage(index, destination[..PageSize]) : ReadPartial(index, inPage, destination[..n]);
            if (error != NbdError.None)
            {
                Interlocked.Increment(ref _counters.FailedReads);
                return error;
            }

            destination = destination[n..];
            offset += n;
        }

        return NbdError.None;
    }

    public NbdError Write(long offset, ReadOnlySpan<byte> source, bool fua)
    {
        // FUA asks for nothing more: the data is in memory, and visible to every connection once this returns.
        _ = fua;
        if (IsReadOnly)
        {
            return NbdError.NotPermitted;
        }

        if (!InRange(offset, source.Length))
        {
            return Refuse();
        }

        while (!source.IsEmpty)
        {
            int index = (int)(offset >> PageShift);
            int inPage = (int)(offset & PageMask);
            int n = Math.Min(PageSize - inPage, source.Length);
            NbdError error = n == PageSize ? StorePage(index, source[..PageSize], lockHeld: false) : WritePartial(index, inPage, source[..n]);
            if (error != NbdError.None)
            {
                Interlocked.Increment(ref _counters.FailedWrites);
                return error;
            }

            source = source[n..];
            offset += n;
        }

        return NbdError.None;
    }

    /// <summary>Nothing to write back: every write is in memory and visible once it has returned.</summary>
    public NbdError Flush() => NbdError.None;

    public NbdError Trim(long offset, long length)
        => ZeroRange(offset, length, keepAllocated: false, discard: true);

    public NbdError WriteZeroes(long offset, long length, bool noHole, bool fastZero)
    {
        // FAST_ZERO asks for a zeroing faster than the same WRITE; part of a page is a read-modify-write, no faster,
        // so it is refused before anything changes (proto.md: ENOTSUP, and the client writes the zeroes itself).
        if (fastZero && ((offset | length) & (PageSize - 1)) != 0)
        {
            return NbdError.NotSupported;
        }

        return ZeroRange(offset, length, keepAllocated: noHole, discard: false);
    }

    public int GetExtents(long offset, long length, Span<BlockExtent> extents)
    {
        if (!InRange(offset, length))
        {
            Refuse();
            return 0;
        }

        int count = 0;
        long end = offset + length;
        while (offset < end)
        {
            int index = (int)(offset >> PageShift);
            long next = Math.Min(((long)index + 1) << PageShift, end);
            _slots.Peek(index, out uint value, out uint info);
            ExtentFlags flags = SlotInfo.IsZero(info, value)
                ? ExtentFlags.Hole | ExtentFlags.Zero
                : ExtentFlags.Allocated;
            if (count > 0 && extents[count - 1].Flags == flags)
            {
                extents[count - 1] = extents[count - 1] with { Length = extents[count - 1].Length + (next - offset) };
            }
            else if (count < extents.Length)
            {
                extents[count++] = new BlockExtent(next - offset, flags);
            }
            else
            {
                break;
            }

            offset = next;
        }

        return count;
    }

    public ZramStats GetStats()
    {
        ZsPoolStats pool = _pool.GetStats();
        long metadata = _slots.Bytes + pool.MetadataBytes + DeviceMetadataBytes;
        return new ZramStats
        {
            OrigDataSize = Interlocked.Read(ref _counters.PagesStored) << PageShift,
            // A deduplicated object counts once, in the index; its slots count in orig_data_size each.
            ComprDataSize = Interlocked.Read(ref _counters.ComprDataSize) + (_dedup?.Bytes ?? 0),
            MemUsedTotal = (pool.PagesUsed << PageShift) + metadata,
            MemLimit = Interlocked.Read(ref _memLimit),
            MemUsedMax = RaiseMemUsedMax((pool.PagesUsed << PageShift) + metadata),
            SamePages = Interlocked.Read(ref _counters.SamePages),
            PagesCompacted = pool.PagesCompacted,
            HugePages = Interlocked.Read(ref _counters.HugePages) + (_dedup?.HugeEntries ?? 0),
            HugePagesSince = Interlocked.Read(ref _counters.HugePagesSince),
            FailedReads = Interlocked.Read(ref _counters.FailedReads),
            FailedWrites = Interlocked.Read(ref _counters.FailedWrites),
            InvalidIo = Interlocked.Read(ref _counters.InvalidIo),
            NotifyFree = Interlocked.Read(ref _counters.NotifyFree),
            DiscardedPages = Interlocked.Read(ref _counters.DiscardedPages),
            DeferredFreeDepth = pool.DeferredQueueDepth,
            CompactionRuns = Interlocked.Read(ref _counters.CompactionRuns),
            CompactionTime = Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _counters.CompactionTicks)),
            MetadataBytes = metadata,
            RecompressedPages = Interlocked.Read(ref _counters.RecompressedPages),
            RecompressBytesSaved = Interlocked.Read(ref _counters.RecompressBytesSaved),
            RecompressDictPages = Interlocked.Read(ref _counters.DictionaryPages),
            RecompressDictBytes = Volatile.Read(ref _dictionary)?.MemoryBytes ?? 0,
            DedupPages = _dedup is null ? 0 : _dedup.References - _dedup.Count,
            DedupBytesSaved = _dedup?.BytesSaved ?? 0,
            BdCount = _backing?.Count ?? 0,
            BdReads = _backing?.Reads ?? 0,
            BdWrites = _backing?.Writes ?? 0,
            WritebackLimit = _backing?.DailyLimitBytes ?? 0,
            WritebackToday = _backing?.WrittenToday ?? 0,
        };
    }

    /// <summary>zram's compact attribute: frees the deferred objects, compacts the pool, returns the pages freed.</summary>
    public long Compact() => CompactCore("manual", shrinkHandles: true);

    /// <summary>Frees every object whose free was deferred (trimmed and overwritten pages), and punches out the
    /// written-back blocks they gave back, now.</summary>
    public void FlushDeferredFrees()
    {
        _pool.FlushDeferred();
        _backing?.PunchFreed();
    }

    /// <summary>zram's mem_limit: 0 = none, else at least <see cref="MinimumMemLimit"/>, rounded up to whole pages as
    /// the kernel keeps it (mem_limit_store's PAGE_ALIGN; mm_stat shows the rounded value). Applies to mem_used_total
    /// from the next allocation on.</summary>
    public void SetMemLimit(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        bytes = RoundMemLimit(bytes);
        if (bytes != 0 && bytes < MinimumMemLimit)
        {
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, $"mem_limit is below {Name}'s minimum of {MinimumMemLimit} bytes");
        }

        long budget = DeferredFreeBudget(bytes);
        Interlocked.Exchange(ref _memLimit, bytes);
        _pool.DeferredFreeByteBudget = budget;
        _pool.WarmLimitBytes = budget;
        _compactor.Kick();
    }

    /// <summary>
    /// A mem_limit as the device keeps it: rounded up to whole pages (down, for the few values too large to round up),
    /// as the kernel's mem_limit_store; the minimum applies to the rounded value, wherever a limit is checked.
    /// </summary>
    public static long RoundMemLimit(long bytes)
        => bytes > long.MaxValue - (PageSize - 1) ? bytes & ~(long)(PageSize - 1) : (bytes + PageSize - 1) & ~(long)(PageSize - 1);

    /// <summary>The queue's capacity: as configured, else one entry per block (at most
    /// <see cref="ZramDeviceOptions.MaxDeferredFreeCapacity"/>), so that a discard of the whole device (mkfs, fstrim,
    /// swapon) is queued whole rather than freed on the request path once the queue is full.</summary>
    private static int DeferredFreeCapacity(ZramDeviceOptions options) =>
        options.DeferredFreeCapacity ?? (int)Math.Min(options.DiskSize >> PageShift, ZramDeviceOptions.MaxDeferredFreeCapacity);

    /// <summary>The pool's deferred-free byte budget, as <see cref="DeferredFreeBudget"/> set it from the limit.</summary>
    internal long DeferredFreeByteBudget => _pool.DeferredFreeByteBudget;

    /// <summary>The slot table, for tests that hold a slot's lock as a request does.</summary>
    internal SlotTable Slots => _slots;

    /// <summary>
    /// What objects waiting for a deferred free may hold: half the room between the compaction watermark and the
    /// limit, so that with live data at the watermark, garbage alone never takes the pool to the limit (where a
    /// write pays for a synchronous flush and compaction), however long the background drain waits for a CPU.
    /// Without a limit only the queue's capacity bounds it. The pool's warm pages (freed, kept resident for reuse, in
    /// no count) get the same room beyond the limit: 32 MiB of them passed a 40 MiB limit by 70% under churn.
    /// </summary>
    private long DeferredFreeBudget(long limit) =>
        limit == 0 ? long.MaxValue : PercentOf(limit, 100 - _options.CompactWatermarkPercent) / 2;

    /// <summary><paramref name="percent"/> % of <paramref name="bytes"/>, without overflow: a limit may be any size up
    /// to long.MaxValue (the kernel's mem_limit takes one too), and limit x 90 wrapped negative past 10^17 bytes (a
    /// `set mem_limit=1000000T` that failed yet changed the limit, a watermark pass that wrote every page back).</summary>
    private static long PercentOf(long bytes, int percent) => (long)((Int128)bytes * percent / 100);

    /// <summary>Whether <paramref name="used"/> is at or past <paramref name="percent"/> % of <paramref name="limit"/>.</summary>
    private static bool AtPercent(long used, long limit, int percent) => (Int128)used * 100 >= (Int128)limit * percent;

    /// <summary>Distinct settings <see cref="SetAlgorithm"/> keeps a compressor for (the device's first included).</summary>
    public const int MaxAlgorithmSettings = 4;

    /// <summary>
    /// Changes the compressor of new writes ("lz4", "lz4hc:12", "zstd:3"...). Pages already stored keep the
    /// algorithm recorded in their slot and stay readable (the kernel allows this only on an empty device).
    /// </summary>
    /// <exception cref="InvalidOperationException">A new setting past <see cref="MaxAlgorithmSettings"/>: each keeps a
    /// stream per CPU for the device's life (a writer may still hold one), so a script stepping through levels would
    /// grow the daemon without bound.</exception>
    public void SetAlgorithm(string algorithm)
    {
        if (!CompressionSpec.TryParse(algorithm, out CompressionSpec spec, out string error))
        {
            throw new ArgumentException(error, nameof(algorithm));
        }

        lock (_compressorsLock)
        {
            // One compressor per spec: each holds a stream per CPU (zstd's contexts too) and lives as long as the
            // device (a writer may still hold the one it took), so switching back takes the one made before. Not
            // recompression's, which has a single stream.
            Compressor? compressor = _allCompressors.Find(c => c.Spec == spec && c != _secondary);
            if (compressor is null)
            {
                List<Compressor> kept = _allCompressors.FindAll(c => c != _secondary);
                if (kept.Count >= MaxAlgorithmSettings)
                {
                    throw new InvalidOperationException(
                        $"{Name} has used {MaxAlgorithmSettings} algorithm settings ({string.Join(", ", kept.Select(c => c.Spec))}), the most it keeps: use one of them, or restart zramd");
                }

                compressor = new Compressor(spec);
                _allCompressors.Add(compressor);
            }

            // Published before any write can use the new compressor, so every slot's algorithm has a decompressor.
            Volatile.Write(ref _decompressors[(int)spec.Algorithm], _decompressors[(int)spec.Algorithm] ?? compressor);
            _compressor = compressor;
        }
    }

    /// <summary>The compressors made so far (for tests).</summary>
    internal int CompressorCount
    {
        get
        {
            lock (_compressorsLock)
            {
                return _allCompressors.Count;
            }
        }
    }

    /// <summary>
    /// zram's idle attribute ("all"): marks every slot that holds a pool object idle now, as if untouched for the
    /// configured idle time; a read or write of a slot makes it active again. Returns the slots marked.
    /// </summary>
    public long MarkIdle()
    {
        long idle = AgeSlots(markAll: true);
        _recompressor?.Kick();
        return idle;
    }

    /// <summary>
    /// zram's recompress: recompresses the slots of <paramref name="type"/> with the recompression algorithm,
    /// keeping each result only when it lands in a smaller size class; at most <paramref name="maxPages"/>
    /// tried (0: no limit), for at most <paramref name="timeLimit"/> (null: none), only objects of at least
    /// <paramref name="threshold"/> bytes, each kept only if it comes out below it (the kernel's threshold=; 0: any). Runs on the caller's thread, without the
    /// background's CPU budget. <paramref name="stopping"/> (the daemon's stop) ends the run at the next slot, and a
    /// run still waiting for another's turn at once.
    /// </summary>
    public RecompressionResult Recompress(SlotSelection type, long maxPages = 0, TimeSpan? timeLimit = null, int threshold = 0, CancellationToken stopping = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxPages);
        ArgumentOutOfRangeException.ThrowIfNegative(threshold);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(threshold, HugeClassSize); // the kernel's EINVAL
        if (_secondary is null)
        {
            throw new InvalidOperationException($"{Name} has no recompression algorithm: set recompress-algorithm (e.g. zstd:3)");
        }

        long candidates = 0, recompressed = 0;
        long savedBefore = Interlocked.Read(ref _counters.RecompressBytesSaved);
        bool stoppedByLimit = false, stoppedByTime = false;
        long started = Stopwatch.GetTimestamp();
        if (!EnterTurn(_recompressLock, stopping, started, timeLimit, out bool timedOut))
        {
            return new RecompressionResult(0, 0, 0, StoppedByMemLimit: false, StoppedByTimeLimit: timedOut, StoppedByStop: !timedOut);
        }

        try
        {
            PrepareDictionary(type);
            PrepareCompressionTables();
            // max_pages bounds the slots worked on, recompressed or not, as the kernel's (its recompress_slot counts
            // every page it compressed again: "we still spent resources on it"), and goes to the largest objects first.
            // Each walk takes the sizes below the one before: a slot a walk tried is not tried again by the next (one a
            // threshold refused is left unmarked, and would be).
            int[] walks = maxPages == 0 ? [0] : LargestFirst(maxPages, info => IsRecompressCandidate(info, type));
            for (int walk = 0; walk < walks.Length; walk++)
            {
                int minSize = walks[walk], maxSize = walk == 0 ? int.MaxValue : walks[walk - 1];
                for (int index = 0; index < _slots.Count && (maxPages == 0 || candidates < maxPages) && !stopping.IsCancellationRequested; index++)
                {
                    RecompressOutcome outcome = RecompressSlot(index, type, threshold, minSize, maxSize, clearIdle: true);
                    if (timeLimit is { } limit && outcome != RecompressOutcome.Skipped && Stopwatch.GetElapsedTime(started) >= limit)
                    {
                        stoppedByTime = true;
                    }

                    candidates += outcome == RecompressOutcome.Skipped ? 0 : 1;
                    recompressed += outcome == RecompressOutcome.Recompressed ? 1 : 0;
                    if (outcome == RecompressOutcome.NoSpace)
                    {
                        stoppedByLimit = true;
                        break;
                    }

                    if (stoppedByTime)
                    {
                        break;
                    }
                }

                if (stoppedByLimit || stoppedByTime)
                {
                    break;
                }
            }

            _dictionary?.ReleaseCompressionTables();
            long saved = Interlocked.Read(ref _counters.RecompressBytesSaved) - savedBefore;
            ZramDeviceLog.Recompressed(_logger, Name, type.ToString().ToLowerInvariant(), recompressed, candidates, saved);
            return new RecompressionResult(candidates, recompressed, saved, stoppedByLimit, stoppedByTime, stopping.IsCancellationRequested);
        }
        finally
        {
            _recompressLock.Exit();
        }
    }

    /// <summary>
    /// Takes <paramref name="turn"/> (<see cref="_recompressLock"/>, <see cref="_writebackTurn"/>) for a verb, giving
    /// up when <paramref name="stopping"/> is cancelled first (verbs queued behind a long run would otherwise each run in
    /// full after the daemon's SIGTERM), or when the verb's <paramref name="timeLimit"/>, counted from
    /// <paramref name="started"/>, passes first (<paramref name="timedOut"/>): the run holding it may have none.
    /// </summary>
    private static bool EnterTurn(Lock turn, CancellationToken stopping, long started, TimeSpan? timeLimit, out bool timedOut)
    {
        timedOut = false;
        while (!turn.TryEnter(StopCheckInterval))
        {
            timedOut = timeLimit is { } limit && Stopwatch.GetElapsedTime(started) >= limit;
            if (stopping.IsCancellationRequested || timedOut)
            {
                return false;
            }
        }

        if (stopping.IsCancellationRequested)
        {
            turn.Exit();
            return false;
        }

        return true;
    }

    /// <summary>
    /// zram's writeback: moves the slots of <paramref name="type"/> to the backing file, freeing their pool memory
    /// (given back to the OS by the compaction that follows); at most <paramref name="maxPages"/> (0: no limit),
    /// for at most <paramref name="timeLimit"/> (null: none), only in <paramref name="pages"/> when given (the
    /// kernel's page_index and page_indexes; they may overlap). Stops early when the daily limit is used up, and at the
    /// next slot when <paramref name="stopping"/> (the daemon's stop) is cancelled.
    /// </summary>
    public WritebackResult Writeback(SlotSelection type, long maxPages = 0, TimeSpan? timeLimit = null, CancellationToken stopping = default, PageRange[]? pages = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxPages);
        if (_backing is null)
        {
            throw new InvalidOperationException($"{Name} has no backing file: set writeback-file");
        }

        PageRange[] ranges = pages is null ? [new PageRange(0, _slots.Count)] : MergeRanges(pages);

        WritebackOutcome stoppedBy = WritebackOutcome.Skipped;
        bool stoppedByTime = false;
        long started = Stopwatch.GetTimestamp();
        if (!EnterTurn(_writebackTurn, stopping, started, timeLimit, out bool timedOut))
        {
            return new WritebackResult(0, WritebackOutcome.Skipped, StoppedByTimeLimit: timedOut, StoppedByStop: !timedOut, Failed: 0);
        }

        var tally = default(WritebackTally);
        Volatile.Write(ref _writebackVerbRunning, true);
        try
        {
            WritebackBatch batch = _writebackBatch ??= new WritebackBatch();
            // A budget (max_pages, or what is left of the daily limit) goes to the largest objects first, as the kernel's.
            long budget = Math.Min(maxPages == 0 ? long.MaxValue : maxPages, _backing.BudgetLeft / BackingFile.BlockSize);
            int[] walks = budget >= _slots.Count ? [0] : LargestFirst(budget, info => IsWritebackCandidate(info, type, minAge: 0, classIndex: -1), ranges);
            for (int walk = 0; walk < walks.Length && !stoppedByTime && stoppedBy == WritebackOutcome.Skipped; walk++)
            {
                int minSize = walks[walk], maxSize = walk == 0 ? int.MaxValue : walks[walk - 1];
                int range = 0;
                // max_pages bounds the pages tried, written or failed (the kernel's recompress counts a failed one too).
                for (int index = NextInRanges(ranges, ref range, -1); index >= 0 && (maxPages == 0 || tally.Written + tally.Failed + batch.Count < maxPages) && !stopping.IsCancellationRequested; index = NextInRanges(ranges, ref range, index))
                {
                    // As the kernel's: a failed write is not fatal; the others are tried, and the run reports it.
                    WritebackOutcome outcome = Stage(batch, index, type, minAge: 0, minSize, maxSize, ref tally);
                    if (outcome is not WritebackOutcome.Skipped and not WritebackOutcome.WrittenBack)
                    {
                        stoppedBy = outcome;
                        break;
                    }

                    if (outcome == WritebackOutcome.WrittenBack && timeLimit is { } limit && Stopwatch.GetElapsedTime(started) >= limit)
                    {
                        stoppedByTime = true;
                        break;
                    }
                }

                FlushInto(batch, ref tally);
            }
        }
        finally
        {
            Volatile.Write(ref _writebackVerbRunning, false);
            ExitWritebackTurn();
        }

        long written = tally.Written, failed = tally.Failed;
        if (written > 0)
        {
            CompactCore("writeback");
        }

        _backing.DropCached();
        ZramDeviceLog.WrittenBack(_logger, Name, type.ToString().ToLowerInvariant(), written);
        if (failed > 0)
        {
            // The reply sends the admin here: a line for this run, whatever the rate limit of the per-write lines let by.
            ZramDeviceLog.WritebackRunFailed(_logger, Name, failed, Volatile.Read(ref _lastWritebackError) ?? "unknown");
        }

        return new WritebackResult(written, stoppedBy, stoppedByTime, stopping.IsCancellationRequested, failed);
    }

    /// <summary>zram's mem_used_max reset: the peak restarts from the current usage.</summary>
    public void ResetMemUsedMax()
    {
        _pool.ResetPeak();
        Volatile.Write(ref _memUsedMax, MemUsedTotal);
    }

    /// <summary>Raises mem_used_max to <paramref name="used"/> if that is higher; returns mem_used_max.</summary>
    private long RaiseMemUsedMax(long used)
    {
        long max = Volatile.Read(ref _memUsedMax);
        while (used > max)
        {
            long seen = Interlocked.CompareExchange(ref _memUsedMax, used, max);
            if (seen == max)
            {
                return used;
            }

            max = seen;
        }

        return max;
    }

    /// <summary>The pool's pages passed their peak (<see cref="ZsPool.PeakPagesRaised"/>): mem_used_total now may be the
    /// highest yet. Only on a new peak, so allocations that make none pay nothing for it.</summary>
    private void NotePagePeak() => RaiseMemUsedMax(MemUsedTotal);

    /// <summary>Changes the daily writeback limit (zram's writeback_limit, which counts down instead): false when the
    /// device has no backing file.</summary>
    public bool SetWritebackLimit(long bytesPerDay)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytesPerDay);
        if (_backing is null)
        {
            return false;
        }

        _backing.DailyLimitBytes = bytesPerDay;
        return true;
    }

    /// <summary>
    /// zram's reset: frees every stored page and zeroes the event counters (huge_pages_since, io_stat, discards).
    /// The size, algorithm and memory limit stay. Meant for an idle device; I/O racing with it stays safe but
    /// may leave some of its pages stored. A recompression or writeback run going on is waited for, as the kernel's
    /// reset waits for init_lock, which those hold (a run beside it wrote back after the walk and counted in the
    /// zeroed bd_writes).
    /// </summary>
    public void Reset()
    {
        using Lock.Scope scope = _recompressLock.EnterScope();
        using Lock.Scope writeback = _writebackTurn.EnterScope();
        for (int index = 0; index < _slots.Count; index++)
        {
            if ((_slots.PeekInfo(index) & SlotInfo.Written) != 0)
            {
                ClearSlot(index);
            }
        }

        // The written-back blocks the walk gave back, punched out in runs (one fallocate for a file written in order).
        _backing?.PunchFreed();

        // The dictionary goes with the data it was trained on, once no slot needs it (writes never make new users:
        // only recompression, which this lock keeps out); the next recompression trains a new one.
        if (_dictionary is not null && Interlocked.Read(ref _counters.DictionaryPages) == 0)
        {
            DropDictionary();
        }

        // What held the data goes too, as the kernel's reset frees its pool: the dedup index's arrays, and the handle
        // cells, zspage descriptors and kept pages the data grew (a compaction that moves no object). Before the
        // counters are zeroed, which this compaction counts in.
        CompactCore("reset", shrinkHandles: true);
        _counters.ResetEvents();
        _pool.ResetCounters();
        ResetMemUsedMax();
        _backing?.ResetCounters();
    }

    public IReadOnlyList<ZsClassStats> GetClassStats() => _pool.GetClassStats();

    /// <summary>The pool's own totals (objects, words, metadata) behind <see cref="GetStats"/>.</summary>
    internal ZsPoolStats GetPoolStats() => _pool.GetStats();

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _recompressor?.Dispose();

        // Null only when the constructor failed before making them.
        _compactor?.Dispose();
        _backing?.Dispose();
        _dedup?.Dispose();
        _pool?.Dispose();
        foreach (Compressor compressor in _allCompressors)
        {
            compressor.Dispose();
        }

        DropDictionary();
    }

    /// <summary>
    /// Likewise the recompression dictionary, once no slot uses it (a discard of the whole device), as a reset drops it:
    /// it counts in mem_used_total, and the next recompression trains one on what the device holds then. Only a
    /// recompression makes new users, under the recompression lock; one running now, or a background pass between its
    /// slices, keeps it. Tried, not waited for: the caller may hold a slot lock, which a recompression takes under that
    /// lock.
    /// </summary>
    private void DropUnusedDictionary()
    {
        if (Volatile.Read(ref _dictionary) is null || Interlocked.Read(ref _counters.DictionaryPages) != 0 || !_recompressLock.TryEnter())
        {
            return;
        }

        try
        {
            // A slot's count falls only after it stopped using the dictionary (a reader holds its slot lock meanwhile).
            // A background pass lets go of the lock between its slices, and trained its dictionary in the first: it
            // keeps it until the pass ends, though no slot may use it yet.
            if (_dictionary is not null && Interlocked.Read(ref _counters.DictionaryPages) == 0)
            {
                if (_slicedPassOpen)
                {
                    // Asked again when the pass ends (RecompressSlice): a device emptied meanwhile may see no further compaction.
                    _dropDictionaryAfterPass = true;
                }
                else
                {
                    DropDictionary();
                }
            }
        }
        finally
        {
            _recompressLock.Exit();
        }
    }

    /// <summary>Frees the dictionary and its streams; no slot uses it and nothing recompresses.</summary>
    private void DropDictionary()
    {
        Volatile.Write(ref _decompressors[(int)CompressionAlgorithm.ZstdDictionary], null);
        _dictionaryCompressor?.Dispose();
        _dictionaryCompressor = null;
        _dictionary?.Dispose();
        Volatile.Write(ref _dictionary, null);
    }

    /// <summary>
    /// With a dictionary configured and none yet: trains one from up to <see cref="DictionarySampleFactor"/> times
    /// its size of the candidates of <paramref name="type"/>, taken evenly across the table, when there are at least
    /// <see cref="MinDictionarySamples"/> of them and room under the limit for it (else this run recompresses without
    /// one; it counts in mem_used_total as the pool does). The samples live in
    /// native memory for the training only (<see cref="ZstdDictionary.Samples"/>). The recompression lock is held.
    /// </summary>
    private void PrepareDictionary(SlotSelection type)
    {
        if (_options.RecompressDictionarySize == 0 || _dictionary is not null || !RoomWithinLimit(_options.RecompressDictionarySize))
        {
            return;
        }

        long candidates = 0;
        for (int index = 0; index < _slots.Count; index++)
        {
            candidates += MayBeRecompressCandidate(_slots.PeekInfo(index), type) ? 1 : 0;
        }

        if (candidates < MinDictionarySamples)
        {
            return;
        }

        int wanted = (int)Math.Min(candidates, Math.Max(MinDictionarySamples, (long)_options.RecompressDictionarySize * DictionarySampleFactor / PageSize));
        long step = candidates / wanted;
        using var samples = new ZstdDictionary.Samples(wanted, PageSize);
        // The count passes every deduplicated slot, but only those no other slot shares can be sampled: when taking
        // every step-th one falls short, a second sweep takes the ones it stepped over.
        for (int sweep = 0; sweep < 2 && samples.Count < wanted; sweep++)
        {
            long seen = 0;
            for (int index = 0; index < _slots.Count && samples.Count < wanted; index++)
            {
                if (!MayBeRecompressCandidate(_slots.PeekInfo(index), type) || (seen++ % step == 0) != (sweep == 0))
                {
                    continue;
                }

                _slots.Lock(index);
                uint info = _slots.Info(index);
                if (IsRecompressCandidate(CandidateInfo(index, info), type) && LoadObject(index, info, _slots.Value(index), samples.Next) == NbdError.None)
                {
                    samples.Add();
                }

                _slots.Unlock(index);
            }
        }

        int capacity = (int)Math.Min(_options.RecompressDictionarySize, (long)samples.Count * PageSize / 8);
        long started = Stopwatch.GetTimestamp();
        string? error = "too few pages";
        ZstdDictionary? dictionary = samples.Count < MinDictionarySamples ? null
            : ZstdDictionary.Train(samples.Filled, PageSize, samples.Count, capacity, _secondary!.Spec.Level, out error);
        if (dictionary is not null && !RoomWithinLimit(dictionary.MemoryBytes))
        {
            // It counts in mem_used_total, as the pool does: it must fit under the limit as an allocation must.
            dictionary.Dispose();
            dictionary = null;
            error = "no room for it under mem_limit";
        }

        if (dictionary is null)
        {
            ZramDeviceLog.DictionaryFailed(_logger, Name, samples.Count, error ?? "unknown");
            return;
        }

        // As the recompression compressor: one stream for the thread that recompresses (each would grow its own
        // context at the recompression level), a decoder per CPU for reads.
        _dictionaryCompressor = new Compressor(dictionary, streamCount: 1, decoderCount: Environment.ProcessorCount);
        Volatile.Write(ref _decompressors[(int)CompressionAlgorithm.ZstdDictionary], _dictionaryCompressor);
        Volatile.Write(ref _dictionary, dictionary);
        ZramDeviceLog.DictionaryTrained(_logger, Name, dictionary.Size, samples.Count, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    /// <summary>
    /// The background thread's work: free what the write path deferred (the pool drains its queue by itself
    /// only when it is half full) and punch out the written-back blocks given back, then compact if it is due, and give back the pages kept warm if the pool is idle.
    /// </summary>
    internal void BackgroundTick()
    {
        if (_pool.GetStats().DeferredQueueDepth > 0)
        {
            _pool.FlushDeferred();
        }

        _backing?.PunchFreed();

        if (_backing is not null && WritebackToWatermark() > 0)
        {
            CompactCore("writeback");
        }

        string? reason = CompactionDue();
        if (reason != null)
        {
            CompactCore(reason, shrinkHandles: true);
            // The table as this compaction left it: metadata idle now (handles a shrink could not move) is not tried
            // again until the table changes. Taken after the cut: the cells before it come back, one by one, with the
            // same data (a second fill and discard), and must then count as a change.
            _handleCellsAfterCompaction = _pool.GetStats().HandleCells;
        }

        // Pages kept warm for reuse are not in mem_used_total: an idle device gives them back.
        _pool.ReleaseWarmIfUnused();

        // And, once idle, the page cache that the write path's writebacks and the reads of written-back pages left.
        _backing?.DropCachedIfIdle();
    }

    /// <summary>
    /// Why compaction is due now, or null: usage past the watermark of the limit, or enough to gain. Called once per
    /// background tick. The threshold alone does not compact every tick while writes flow: writes that store more
    /// bytes between two ticks than compaction could free refill the freed slots themselves, and compacting under
    /// them only moves objects and gives back pages that the next writes fault in again (4 KiB random overwrites of a
    /// full device: a deferred-free drain every third of a second, each leaving thousands of pages freeable, three
    /// compactions in 5 s moving 77 MiB: about 12% of the daemon's CPU, and a page fault per page given back). Then it
    /// compacts at most every <see cref="BusyCompactionTicks"/> ticks, and as soon as the writes slow down.
    /// </summary>
    internal string? CompactionDue()
    {
        long limit = Interlocked.Read(ref _memLimit);
        long canCompact = _pool.CanCompact();
        ZsPoolStats pool = _pool.GetStats();
        long written = pool.BytesAllocated - _allocatedAtLastTick;
        _allocatedAtLastTick = pool.BytesAllocated;
        _ticksSinceBusyCompaction++;
        if (canCompact > 0 && PastWatermark(limit))
        {
            return "watermark";
        }

        // A discard of most of the device (blkdiscard, mkfs, fstrim, swapon) empties whole zspages, which leaves
        // compaction nothing to gain, but not the handle cells and the dedup index grown for the data: the kernel's
        // zs_free gives each handle back at once. Once writes stop, those go back too (tried again only once the table
        // has changed, if a handle in the deferred queue kept it from being cut).
        if (written == 0 && IdleMetadataBytes(pool) >= IdleMetadataToShrink && pool.HandleCells != _handleCellsAfterCompaction)
        {
            return "idle metadata";
        }

        if (_options.CompactThresholdPages <= 0 || canCompact < _options.CompactThresholdPages)
        {
            return null;
        }

        if (written < canCompact * PageSize)
        {
            return "threshold";
        }

        if (_ticksSinceBusyCompaction < BusyCompactionTicks)
        {
            return null;
        }

        _ticksSinceBusyCompaction = 0;
        return "threshold while writing";
    }

    /// <summary>Metadata a compaction with its handle shrink would give back: free handle cells, and what the dedup
    /// index's shrink would (about).</summary>
    private long IdleMetadataBytes(ZsPoolStats pool)
        => ((pool.HandleCells - pool.Objects - pool.Words) * sizeof(ulong)) + (_dedup?.ShrinkableBytes ?? 0);

    /// <param name="shrinkHandles">Also give back the pool's handle cells that freed objects left (moving live handles
    /// down, <see cref="MoveHandlesBelowMark"/>): only where the caller holds no slot lock.</param>
    internal long CompactCore(string reason, bool shrinkHandles = false)
    {
        long started = Stopwatch.GetTimestamp();
        _pool.FlushDeferred();
        // A discard of the whole device (blkdiscard, mkfs, swapon) or of most of it: the index's arrays, grown for the
        // data, go back as the pool's metadata does below, not only at a reset (refused while a client is attached).
        _dedup?.Shrink();
        DropUnusedDictionary();
        long freed = _pool.Compact();
        if (shrinkHandles)
        {
            _pool.ShrinkHandles(_moveHandlesBelowMark);
        }

        long elapsed = Stopwatch.GetTimestamp() - started;
        Interlocked.Increment(ref _counters.CompactionRuns);
        Interlocked.Add(ref _counters.CompactionTicks, elapsed);
        ZramDeviceLog.Compacted(_logger, Name, reason, freed, Stopwatch.GetElapsedTime(0, elapsed).TotalMilliseconds);
        return freed;
    }

    /// <summary>
    /// Run by <see cref="ZsPool.ShrinkHandles"/>: every slot whose pool handle (object or word) lies above the handle
    /// table's mark gets the same object or word under a handle below it, so the table can be cut at the mark. Under
    /// each slot's lock, so no read, write or free of the handle runs meanwhile. Deduplicated slots hold entry ids, not
    /// handles: the entries' handles move under the index's lock, once no read of one is in flight
    /// (<see cref="DedupIndex.MoveHandles"/>).
    /// </summary>
    private void MoveHandlesBelowMark()
    {
        _dedup?.MoveHandles(_pool.HandleAboveMark, _pool.MoveObjectHandle);
        for (int index = 0; index < _slots.Count; index++)
        {
            _slots.Peek(index, out uint value, out uint peek);
            if (!(SlotInfo.HasObject(peek) || SlotInfo.HasWord(peek, value)) || !_pool.HandleAboveMark(value))
            {
                continue;
            }

            _slots.Lock(index);
            try
            {
                uint info = _slots.Info(index);
                value = _slots.Value(index);
                if (SlotInfo.HasObject(info) && _pool.HandleAboveMark(value))
                {
                    _slots.Set(index, _pool.MoveObjectHandle(value), info);
                }
                else if (SlotInfo.HasWord(info, value) && _pool.HandleAboveMark(value))
                {
                    _slots.Set(index, _pool.MoveWordHandle(value), info);
                }
            }
            finally
            {
                _slots.Unlock(index);
            }
        }
    }

    /// <summary>
    /// An idle-marking pass: raises the idle age of every slot holding a pool object (its own or a deduplicated one) by
    /// one (up to idle), or with <paramref name="markAll"/> straight to idle. Returns how many slots are idle after it.
    /// </summary>
    internal long AgeSlots(bool markAll)
    {
        long idle = 0;
        for (int index = 0; index < _slots.Count; index++)
        {
            uint peek = _slots.PeekInfo(index);
            if (!SlotInfo.Ages(peek))
            {
                continue;
            }

            if (SlotInfo.IsIdle(peek))
            {
                idle++;
                continue;
            }

            _slots.Lock(index);
            uint info = _slots.Info(index);
            if (SlotInfo.Ages(info))
            {
                info = SlotInfo.WithIdleAge(info, markAll ? SlotInfo.IdleAgeMax : SlotInfo.IdleAge(info) + 1);
                _slots.SetInfo(index, info);
                idle += SlotInfo.IsIdle(info) ? 1 : 0;
            }

            _slots.Unlock(index);
        }

        return idle;
    }

    /// <summary>
    /// The background recompressor's unit of work: offers slots from <paramref name="cursor"/> on for about
    /// <paramref name="slice"/>. Returns true when the cursor went past the last slot (it starts again at 0).
    /// </summary>
    internal bool RecompressSlice(ref int cursor, SlotSelection type, TimeSpan slice, out bool stoppedByLimit)
    {
        stoppedByLimit = false;
        long started = Stopwatch.GetTimestamp();
        long sliceTicks = (long)(slice.TotalSeconds * Stopwatch.Frequency);
        using Lock.Scope scope = _recompressLock.EnterScope();
        if (cursor == 0)
        {
            PrepareDictionary(type);
            _slicedPassOpen = true;
        }

        PrepareCompressionTables();

        while (cursor < _slots.Count)
        {
            RecompressOutcome outcome = RecompressSlot(cursor, type);
            if (outcome == RecompressOutcome.NoSpace)
            {
                // At the limit the pass waits for the next aging: its compression tables should not wait with it.
                _dictionary?.ReleaseCompressionTables();
                stoppedByLimit = true;
                return false;
            }

            cursor++;
            // Checking the clock costs more than skipping a slot: look only after real work or every 4096 slots.
            if ((outcome != RecompressOutcome.Skipped || (cursor & 4095) == 0) && Stopwatch.GetTimestamp() - started >= sliceTicks)
            {
                return false;
            }
        }

        // A whole pass done: the compression tables go until the next one; and the dictionary, if a compaction meanwhile
        // found no slot using it and left it to the pass, and none uses it still.
        _dictionary?.ReleaseCompressionTables();
        _slicedPassOpen = false;
        if (_dropDictionaryAfterPass)
        {
            _dropDictionaryAfterPass = false;
            if (_dictionary is not null && Interlocked.Read(ref _counters.DictionaryPages) == 0)
            {
                DropDictionary();
            }
        }
        cursor = 0;
        return true;
    }

    /// <summary>
    /// Recompresses one slot if it is a candidate of <paramref name="type"/>, keeping the result only if it lands in a
    /// smaller size class. Unlike the kernel's recompress_slot, the slot's lock is not held while compressing (at
    /// zstd:19 some 2 ms, which a read of the page would wait, spinning, behind a low-priority thread): under the lock
    /// the object is decompressed and the slot marked <see cref="SlotInfo.Recompressed"/> (dealt with; every write
    /// stores fresh info without the mark); the new object replaces the old only if, with the lock taken again, the
    /// slot still holds the same object with the mark (a read may have reset its idle age); if only its handle moved
    /// (compaction), the mark goes so that a later pass tries again. The old object is freed
    /// at once (this is not the I/O path).
    /// </summary>
    internal RecompressOutcome RecompressSlot(int index, SlotSelection type, int threshold = 0, int minSize = 0, int maxSize = int.MaxValue, bool clearIdle = false)
    {
        if (_secondary is null || !MayBeRecompressCandidate(_slots.PeekInfo(index), type))
        {
            return RecompressOutcome.Skipped;
        }

        Span<byte> page = stackalloc byte[PageSize];
        uint info, value;
        _slots.Lock(index);
        try
        {
            info = _slots.Info(index);
            uint candidate = CandidateInfo(index, info);
            if (!IsRecompressCandidate(candidate, type) || SlotInfo.Size(candidate) < Math.Max(threshold, minSize) || SlotInfo.Size(candidate) >= maxSize
                || (info = OwnObject(index, info)) == 0)
            {
                return RecompressOutcome.Skipped;
            }

            value = _slots.Value(index);
            if (LoadObject(index, info, value, page) != NbdError.None)
            {
                return RecompressOutcome.Corrupt;
            }

            // Dealt with. A run asked for (clearIdle) leaves the slot no longer idle, as the kernel's recompress_slot
            // clears ZRAM_IDLE on every slot it reads: a later post-processing by idleness (writeback type=idle) needs
            // its own marking. The kernel keeps the access time, so the slot stays the oldest of the others (age
            // IdleAgeMax - 1) for the background writeback's passes by age. The background recompressor keeps the
            // mark: it runs on its own, and would take the marks an admin's `zramd idle` set for a writeback.
            info |= SlotInfo.Recompressed;
            if (clearIdle)
            {
                info = SlotInfo.WithIdleAge(info, Math.Min(SlotInfo.IdleAge(info), SlotInfo.IdleAgeMax - 1));
            }

            _slots.SetInfo(index, info);
        }
        finally
        {
            _slots.Unlock(index);
        }

        int oldSize = SlotInfo.Size(info);
        // With the dictionary only while its compression tables are held (PrepareCompressionTables).
        Compressor compressor = _dictionaryCompressor is { } withDictionary && _dictionary!.HasCompressionTables ? withDictionary : _secondary;
        // The output is copied out and the stream given back before the slot lock is taken again: a thread holding a
        // stream waits for no slot lock (the device's lock order, above; readers of these pages take decoders now).
        Span<byte> output = page;
        int n;
        // A threshold bounds both sides, as in the kernel's recompress_slot: objects of at least it are tried, and a
        // result is kept only below it.
        int capacity = Math.Min(oldSize - 1, _maxCompressedSize);
        if (threshold > 0)
        {
            capacity = Math.Min(capacity, threshold - 1);
        }

        bool smaller;
        using (CompressionStreamLease lease = compressor.Acquire())
        {
            n = lease.Stream.Compress(page, capacity);
            smaller = n != 0 && _pool.ClassIndexOf(n) < _pool.ClassIndexOf(oldSize);
            if (smaller)
            {
                lease.Stream.Buffer[..n].CopyTo(output);
            }
        }

        if (!smaller)
        {
            // The mark stays: not tried again until rewritten. A huge page tried with no threshold is incompressible;
            // under a threshold the result may have been refused for the threshold alone: the mark goes, as the
            // kernel's recompress_slot (6.12) sets no flag then, and a later run tries the page again.
            if (threshold > 0 || (info & SlotInfo.Huge) != 0)
            {
                SettleUnshrunk(index, info, incompressible: threshold == 0);
            }

            return RecompressOutcome.NotSmaller;
        }

        _slots.Lock(index);
        try
        {
            uint now = _slots.Info(index);
            // A writeback batch's mark set meanwhile leaves the object as it was: the smaller one replaces it with fresh
            // info, and the batch gives its block back (SettleWritebackBatch).
            if (!SameObjectInfo(now, info))
            {
                return RecompressOutcome.Skipped; // rewritten, trimmed or written back meanwhile
            }

            if (_slots.Value(index) != value)
            {
                // The same object under another handle (a compaction's handle shrink keeps the info): a later pass tries again.
                _slots.SetInfo(index, now & ~SlotInfo.Recompressed);
                return RecompressOutcome.Skipped;
            }

            if (!TryAllocateForRecompression(n, out uint handle))
            {
                _slots.SetInfo(index, now & ~SlotInfo.Recompressed); // a later pass tries again
                return RecompressOutcome.NoSpace;
            }

            _pool.Write(handle, output[..n]);
            // The age it has gained since the first look (aging passes; a read would have reset it anyway).
            uint newInfo = SlotInfo.Compressed(n, compressor.Algorithm) | SlotInfo.Recompressed | (now & SlotInfo.IdleAgeMask);
            _slots.Set(index, handle, newInfo);
            _pool.Free(value);
            _counters.Replace(now, newInfo);
            Interlocked.Increment(ref _counters.RecompressedPages);
            Interlocked.Add(ref _counters.RecompressBytesSaved, oldSize - n);
            return RecompressOutcome.Recompressed;
        }
        finally
        {
            _slots.Unlock(index);
        }
    }

    /// <summary>Whether a slot's info <paramref name="now"/> still describes the object <paramref name="before"/> did:
    /// the idle age and a writeback batch's mark aside (reads, aging passes and a batch change those alone).</summary>
    private static bool SameObjectInfo(uint now, uint before)
        => ((now ^ before) & ~(SlotInfo.IdleAgeMask | SlotInfo.WritebackPending)) == 0;

    /// <summary>
    /// After a recompression that kept nothing: a huge slot is marked <see cref="SlotInfo.Incompressible"/>, or the
    /// <see cref="SlotInfo.Recompressed"/> mark goes (not <paramref name="incompressible"/>), if the slot still holds
    /// the object tried: its info as marked then (<paramref name="info"/>), the idle age aside. Every write stores fresh
    /// info without the mark, and a compaction that moved the handle keeps it: the object is the same then.
    /// </summary>
    private void SettleUnshrunk(int index, uint info, bool incompressible)
    {
        _slots.Lock(index);
        uint now = _slots.Info(index);
        if (SameObjectInfo(now, info))
        {
            _slots.SetInfo(index, incompressible ? now | SlotInfo.Incompressible : now & ~SlotInfo.Recompressed);
        }

        _slots.Unlock(index);
    }

    /// <summary>
    /// The background writeback: once mem_used_total passes the writeback watermark of the limit, writes back idle
    /// slots, then huge ones, then the others by idle age (the least recently touched first), until the objects
    /// written back add up to what takes usage ten points below the watermark. Returns the slots written back.
    /// </summary>
    internal long WritebackToWatermark()
    {
        long limit = Interlocked.Read(ref _memLimit);
        long used = MemUsedTotal;
        if (_backing is null || limit == 0 || !AtPercent(used, limit, _options.WritebackWatermarkPercent))
        {
            return 0;
        }

        long target = used - PercentOf(limit, Math.Max(_options.WritebackWatermarkPercent - 10, 1));
        // A run asked for is writing back already: this tick leaves it the batch (another caller's watermark run,
        // which ends at the watermark, is waited for).
        while (!_writebackTurn.TryEnter(StopCheckInterval))
        {
            if (Volatile.Read(ref _writebackVerbRunning))
            {
                return 0;
            }
        }

        var tally = default(WritebackTally);
        try
        {
            WritebackBatch batch = _writebackBatch ??= new WritebackBatch();
            ReadOnlySpan<(SlotSelection Type, uint MinAge)> passes =
                [(SlotSelection.Idle, 0), (SlotSelection.Huge, 0), (SlotSelection.All, 2), (SlotSelection.All, 1), (SlotSelection.All, 0)];
            foreach ((SlotSelection type, uint minAge) in passes)
            {
                for (int index = 0; index < _slots.Count && tally.Freed + batch.Bytes < target && tally.Failed == 0; index++)
                {
                    // The sizes the batch reports, not a peek: a deduplicated slot's own info holds no size.
                    WritebackOutcome outcome = Stage(batch, index, type, minAge, minSize: 0, maxSize: int.MaxValue, ref tally);
                    if (outcome is not WritebackOutcome.Skipped and not WritebackOutcome.WrittenBack)
                    {
                        FlushInto(batch, ref tally);
                        ZramDeviceLog.WritebackStopped(_logger, Name, outcome.ToString());
                        return tally.Written;
                    }
                }

                FlushInto(batch, ref tally);
                if (tally.Failed > 0)
                {
                    // Unlike a run asked for: this one has a page to make room for, and the next tick tries again.
                    ZramDeviceLog.WritebackStopped(_logger, Name, WritebackOutcome.IoError.ToString());
                    return tally.Written;
                }
            }
        }
        finally
        {
            ExitWritebackTurn();
        }

        ZramDeviceLog.WrittenBack(_logger, Name, "watermark", tally.Written);
        return tally.Written;
    }

    /// <summary>
    /// A run's step: <see cref="StageWriteback"/>, and the batch written once full. Refused a page of the daily budget
    /// or a block while the batch holds some, the batch is written first (failed writes and slots changed meanwhile
    /// give theirs back) and the slot asked again: the reply must not say the limit or the file is used up when it is not.
    /// </summary>
    private WritebackOutcome Stage(WritebackBatch batch, int index, SlotSelection type, uint minAge, int minSize, int maxSize, ref WritebackTally tally)
    {
        WritebackOutcome outcome = StageWriteback(batch, index, type, minAge, minSize, maxSize);
        if (outcome is WritebackOutcome.NoBudget or WritebackOutcome.NoRoom && batch.Count > 0)
        {
            FlushInto(batch, ref tally);
            outcome = StageWriteback(batch, index, type, minAge, minSize, maxSize);
        }

        if (batch.IsFull)
        {
            FlushInto(batch, ref tally);
        }

        return outcome;
    }

    private void FlushInto(WritebackBatch batch, ref WritebackTally tally)
    {
        tally.Written += FlushWritebackBatch(batch, out long freed, out int failed);
        tally.Failed += failed;
        tally.Freed += freed;
    }

    /// <summary>Ends a writeback run's turn; a batch a throw left staged is given up first (its marks go).</summary>
    private void ExitWritebackTurn()
    {
        if (_writebackBatch is { Count: > 0 } unsent)
        {
            SettleWritebackBatch(unsent, wrote: false, out _, out _);
        }

        _writebackTurn.Exit();
    }

    /// <summary>
    /// The write path's way out at the limit: writes back one slot whose object is of size class
    /// <paramref name="classIndex"/> (any class if negative), so that the allocation takes its place without a new pool page. Slots whose
    /// lock is taken are passed over (the caller may hold one). The search goes round the table from where the
    /// last one stopped, so recently written slots are taken last. <paramref name="last"/> (the slot being written, or
    /// -1) is tried only after every other: its old object is freed as soon as the write is done, so writing it back
    /// costs a write and a day's budget for nothing unless no other slot can go. Skipped when no slot was a candidate.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private WritebackOutcome WritebackForRoom(int classIndex, int last)
    {
        int count = _slots.Count;
        int start = Volatile.Read(ref _writebackCursor);
        for (int i = 0; i <= count; i++)
        {
            int index = i == count ? last : start + i < count ? start + i : start + i - count;
            if (index < 0 || (index == last && i < count))
            {
                continue;
            }

            WritebackOutcome outcome = WritebackSlot(index, SlotSelection.All, minAge: 0, tryLock: true, classIndex, out _);
            if (outcome == WritebackOutcome.WrittenBack)
            {
                Volatile.Write(ref _writebackCursor, index + 1 < count ? index + 1 : 0);
                return outcome;
            }

            if (outcome != WritebackOutcome.Skipped)
            {
                return outcome;
            }
        }

        return WritebackOutcome.Skipped;
    }

    /// <summary>
    /// The write path's last way out with a backing file, when its own class has nothing to give up (early on a class
    /// may hold no object; a huge page needs a whole page): frees whole pool pages. A page comes free only when every
    /// object of a zspage is gone, or once compaction can pack a class's remaining objects into fewer zspages, and
    /// with chains of up to 16 pages a few dozen objects written back from all over the pool free none. So it empties
    /// one class at a time, the one with the fewest objects per resident page first (a huge page frees its page at
    /// once), compacting when that makes a page freeable, until the allocation fits or nothing more can go to the
    /// file. Each round frees a page or leaves a class with no candidate, so it ends. True with the outcome in
    /// <paramref name="error"/> (and the handle) once the allocation was made or failed for another reason than room.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool FreePagesByWriteback(PoolRequest request, long limit, ref bool wroteBack, out uint handle, out NbdError error)
    {
        handle = 0;
        error = NbdError.NoSpace;
        IReadOnlyList<ZsClassStats> classes = _pool.GetClassStats();
        Span<bool> exhausted = stackalloc bool[classes.Count];
        exhausted.Clear(); // [SkipLocalsInit]: a stackalloc holds whatever earlier calls left there
        while (true)
        {
            int victim = -1;
            for (int i = 0; i < classes.Count; i++)
            {
                ZsClassStats c = classes[i];
                if (!exhausted[i] && c.ObjUsed > 0 && c.PagesResident > 0 && (victim < 0
                    || c.ObjUsed * classes[victim].PagesResident < classes[victim].ObjUsed * c.PagesResident))
                {
                    victim = i;
                }
            }

            if (victim < 0)
            {
                return false;
            }

            // At least one object per round, so that rounds cannot repeat without progress.
            long pages = _pool.TotalPages;
            do
            {
                WritebackOutcome outcome = WritebackForRoom(victim, request.Slot);
                if (outcome != WritebackOutcome.WrittenBack)
                {
                    exhausted[victim] = true;
                    if (outcome != WritebackOutcome.Skipped)
                    {
                        // The file is full or the daily budget spent: no other class can go either.
                        exhausted.Fill(true);
                    }

                    break;
                }

                wroteBack = true;
            }
            while (_pool.TotalPages >= pages && _pool.CanCompact() == 0);

            if (_pool.CanCompact() > 0)
            {
                CompactCore("mem_limit");
            }

            if (TryAllocateWithin(request, limit, out handle, out error) || error != NbdError.NoSpace)
            {
                return true;
            }

            classes = _pool.GetClassStats();
        }
    }

    /// <summary>
    /// Writes one slot's object to the backing file if it is a candidate, under the slot's lock (taken only if free
    /// with <paramref name="tryLock"/>): the object goes to a block as it is, the slot takes the block number, and
    /// the pool object is freed at once. <paramref name="size"/>: the bytes of the object written back, else 0.
    /// </summary>
    internal WritebackOutcome WritebackSlot(int index, SlotSelection type, uint minAge, bool tryLock, int classIndex, out int size, int minSize = 0, int maxSize = int.MaxValue)
    {
        size = 0;
        if (_backing is null || !MayBeWritebackCandidate(_slots.PeekInfo(index), type, minAge, classIndex))
        {
            return WritebackOutcome.Skipped;
        }

        if (tryLock)
        {
            if (!_slots.TryLock(index))
            {
                return WritebackOutcome.Skipped;
            }
        }
        else
        {
            _slots.Lock(index);
        }

        try
        {
            return WritebackLocked(index, type, minAge, classIndex, out size, minSize, maxSize);
        }
        finally
        {
            _slots.Unlock(index);
        }
    }

    /// <summary><see cref="WritebackSlot"/> with the slot's lock held by the caller.</summary>
    private WritebackOutcome WritebackLocked(int index, SlotSelection type, uint minAge, int classIndex, out int size, int minSize = 0, int maxSize = int.MaxValue)
    {
        size = 0;
        WritebackOutcome taken = TakeBlockFor(index, type, minAge, classIndex, minSize, maxSize, out uint info, out long block, out long window);
        if (taken != WritebackOutcome.WrittenBack)
        {
            return taken;
        }

        int objectSize = SlotInfo.Size(info);
        Span<byte> scratch = stackalloc byte[PageSize];
        try
        {
            using ZsReadView view = _pool.MapRead(_slots.Value(index), objectSize, scratch);
            _backing!.Write(block, view.Span);
        }
        catch (IOException e)
        {
            _backing!.Free(block);
            _backing.ReturnBudget(window);
            NoteWritebackFailure(e, index);
            return WritebackOutcome.IoError;
        }

        uint newInfo = SlotInfo.InBackingFile(info);
        uint handle = _slots.Value(index);
        _slots.Set(index, (uint)block, newInfo);
        _pool.Free(handle);
        _counters.Replace(info, newInfo);
        size = objectSize;
        return WritebackOutcome.WrittenBack;
    }

    /// <summary>
    /// The start of a slot's writeback, its lock held: if it is a candidate, a page of the daily budget and a block
    /// taken for it, and the slot holding its object itself (<see cref="OwnObject"/>). WrittenBack: go on with
    /// <paramref name="info"/> (the slot's now), <paramref name="block"/> and the budget's <paramref name="window"/>
    /// (<see cref="BackingFile.ReturnBudget"/>); anything else gave back what it took.
    /// </summary>
    private WritebackOutcome TakeBlockFor(int index, SlotSelection type, uint minAge, int classIndex, int minSize, int maxSize, out uint info, out long block, out long window)
    {
        block = -1;
        window = 0;
        info = _slots.Info(index);
        uint candidate = CandidateInfo(index, info);
        if (_backing is null || !IsWritebackCandidate(candidate, type, minAge, classIndex) || SlotInfo.Size(candidate) < minSize || SlotInfo.Size(candidate) >= maxSize)
        {
            return WritebackOutcome.Skipped;
        }

        // The budget and a block before a deduplicated slot leaves the index (OwnObject): one refused here stays
        // shared. A slot a batch holds has its page of the budget already, which the batch gives back when it finds the
        // slot written back by the write path: that page is spent here, over the limit for the moment.
        if (!_backing.TryTakeBudget(out window, overdraft: (info & SlotInfo.WritebackPending) != 0))
        {
            return WritebackOutcome.NoBudget;
        }

        block = _backing.Allocate();
        if (block < 0)
        {
            _backing.ReturnBudget(window);
            return WritebackOutcome.NoRoom;
        }

        if (block > uint.MaxValue || (info = OwnObject(index, info)) == 0)
        {
            // The slot keeps a 32-bit block number: 16 TiB of backing file at most. Or another slot shared the
            // entry since CandidateInfo looked.
            _backing.Free(block);
            _backing.ReturnBudget(window);
            return block > uint.MaxValue ? WritebackOutcome.NoRoom : WritebackOutcome.Skipped;
        }

        return WritebackOutcome.WrittenBack;
    }

    /// <summary>
    /// A writeback run's step: slot <paramref name="index"/>, if a candidate, copied into <paramref name="batch"/> with a
    /// block of its own and marked <see cref="SlotInfo.WritebackPending"/> (WrittenBack here means staged; <see
    /// cref="FlushWritebackBatch"/> writes it). The batch lock is held.
    /// </summary>
    internal WritebackOutcome StageWriteback(WritebackBatch batch, int index, SlotSelection type, uint minAge, int minSize = 0, int maxSize = int.MaxValue)
    {
        if (_backing is null || !MayBeWritebackCandidate(_slots.PeekInfo(index), type, minAge, classIndex: -1))
        {
            return WritebackOutcome.Skipped;
        }

        _slots.Lock(index);
        try
        {
            // Staged already (the write path's writeback may still take it: it clears the mark, and the batch gives
            // its block back).
            if ((_slots.Info(index) & SlotInfo.WritebackPending) != 0)
            {
                return WritebackOutcome.Skipped;
            }

            WritebackOutcome taken = TakeBlockFor(index, type, minAge, classIndex: -1, minSize, maxSize, out uint info, out long block, out long window);
            if (taken == WritebackOutcome.WrittenBack)
            {
                int objectSize = SlotInfo.Size(info);
                Span<byte> copy = batch.Next;
                using (ZsReadView view = _pool.MapRead(_slots.Value(index), objectSize, copy))
                {
                    view.Span.CopyTo(copy);
                }

                _slots.SetInfo(index, info | SlotInfo.WritebackPending);
                batch.Add(index, block, objectSize, window);
            }

            return taken;
        }
        finally
        {
            _slots.Unlock(index);
        }
    }

    /// <summary>
    /// Writes <paramref name="batch"/> to the backing file with one wait, then gives each slot still marked its block
    /// and frees its pool object; a slot written, trimmed or written back meanwhile keeps what it has now, and its
    /// block goes back. A slot still marked whose write failed keeps its object; <paramref name="failed"/> counts those.
    /// Returns the slots written back, <paramref name="freed"/> the bytes of their objects. The batch is empty after.
    /// </summary>
    internal int FlushWritebackBatch(WritebackBatch batch, out long freed, out int failed)
    {
        freed = 0;
        failed = 0;
        if (batch.Count == 0)
        {
            return 0;
        }

        IOException? error;
        int written;
        try
        {
            error = _backing!.WriteBlocks(batch.Blocks, batch.Sizes, batch.Data, batch.Failed);
            written = SettleWritebackBatch(batch, wrote: true, out freed, out failed);
        }
        catch
        {
            // What is not settled yet is given up (the marks go); settled twice, a block switched to would be freed.
            SettleWritebackBatch(batch, wrote: false, out _, out _);
            throw;
        }
        finally
        {
            batch.Clear();
        }

        if (error is not null && failed > 0)
        {
            NoteWritebackFailure(error, batch.Slot(0), failed);
        }

        return written;
    }

    /// <summary>
    /// After a batch's write (<paramref name="wrote"/>; the blocks it failed are marked in <see cref="WritebackBatch.Failed"/>),
    /// or instead of it: each slot still marked whose block was written takes it and its pool object is freed; the
    /// others keep their objects, unmarked (<paramref name="failed"/>: those still marked); every block not taken goes
    /// back. Returns the slots written back, <paramref name="freed"/> the bytes of their objects. Each entry is settled
    /// once: the batch's count falls as it goes.
    /// </summary>
    private int SettleWritebackBatch(WritebackBatch batch, bool wrote, out long freed, out int failed)
    {
        freed = 0;
        failed = 0;
        int written = 0;
        for (int i = batch.Count - 1; i >= 0; i--)
        {
            int index = batch.Slot(i);
            long block = batch.Block(i);
            long window = batch.Window(i);
            int size = batch.Size(i);
            bool blockWritten = wrote && !batch.Failed[i];
            batch.Drop(); // first: an entry half settled is never settled again
            bool switched = false;
            _slots.Lock(index);
            try
            {
                uint now = _slots.Info(index);
                if ((now & SlotInfo.WritebackPending) != 0)
                {
                    if (blockWritten)
                    {
                        // The object marked is the one copied: a compaction may have moved its handle, nothing else.
                        uint newInfo = SlotInfo.InBackingFile(now);
                        uint handle = _slots.Value(index);
                        _slots.Set(index, (uint)block, newInfo);
                        switched = true;
                        _pool.Free(handle);
                        _counters.Replace(now, newInfo);
                    }
                    else
                    {
                        _slots.SetInfo(index, now & ~SlotInfo.WritebackPending);
                        failed += wrote ? 1 : 0;
                    }
                }
            }
            finally
            {
                _slots.Unlock(index);
            }

            if (switched)
            {
                written++;
                freed += size;
            }
            else
            {
                _backing!.Free(block);
                _backing.ReturnBudget(window);
            }
        }

        return written;
    }

    /// <summary>The ranges sorted by start and overlapping or adjacent ones joined; each must lie in the device.</summary>
    private PageRange[] MergeRanges(PageRange[] pages)
    {
        PageRange[] sorted = [.. pages.OrderBy(r => r.Start)];
        var merged = new List<PageRange>(sorted.Length);
        foreach (PageRange range in sorted)
        {
            if (range.Start < 0 || range.End > _slots.Count || range.Start >= range.End)
            {
                throw new ArgumentOutOfRangeException(nameof(pages), $"pages {range.Start}-{range.End - 1} are not in {Name}'s 0-{_slots.Count - 1}");
            }

            if (merged.Count > 0 && range.Start <= merged[^1].End)
            {
                merged[^1] = merged[^1] with { End = Math.Max(merged[^1].End, range.End) };
            }
            else
            {
                merged.Add(range);
            }
        }

        return [.. merged];
    }

    /// <summary>The first slot after <paramref name="index"/> (-1: before the first) in the sorted, disjoint
    /// <paramref name="ranges"/>, from <paramref name="range"/> on (a walk's cursor, 0 at its start); -1 past the last.</summary>
    private static int NextInRanges(PageRange[] ranges, ref int range, int index)
    {
        for (index++; range < ranges.Length; range++)
        {
            if (index < ranges[range].End)
            {
                return Math.Max(index, ranges[range].Start);
            }
        }

        return -1;
    }

    /// <summary>
    /// Logs a failed write to the backing file, at most once every <see cref="FailureReportInterval"/> with how many
    /// failed since (<paramref name="failures"/>: the writes this one stands for, a batch's): a run goes on after a
    /// failure, and on a full or failing filesystem every page of it fails.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void NoteWritebackFailure(IOException e, int index, int failures = 1)
    {
        Volatile.Write(ref _lastWritebackError, e.Message);
        long unreported = Interlocked.Add(ref _writebackFailuresUnreported, failures);
        long last = Volatile.Read(ref _writebackFailureReported);
        long now = Stopwatch.GetTimestamp();
        if ((last == 0 || Stopwatch.GetElapsedTime(last, now) >= FailureReportInterval)
            && Interlocked.CompareExchange(ref _writebackFailureReported, now, last) == last)
        {
            Interlocked.Add(ref _writebackFailuresUnreported, -unreported);
            ZramDeviceLog.WritebackFailed(_logger, e, Name, index, unreported - 1);
        }
    }

    /// <summary>
    /// The smallest object sizes of the walks a run bounded to <paramref name="budget"/> pages makes, largest objects
    /// first (<see cref="SizeBuckets"/>), from the candidates (<paramref name="isCandidate"/>, given an object's info)
    /// a peek sees: a deduplicated slot's object is known only under its lock (<see cref="CandidateInfo"/>).
    /// </summary>
    private int[] LargestFirst(long budget, Func<uint, bool> isCandidate, PageRange[]? ranges = null)
    {
        Span<long> counts = stackalloc long[SizeBuckets.Count];
        counts.Clear(); // the device skips zeroing its locals
        ranges ??= [new PageRange(0, _slots.Count)];
        int range = 0;
        for (int index = NextInRanges(ranges, ref range, -1); index >= 0; index = NextInRanges(ranges, ref range, index))
        {
            uint info = _slots.PeekInfo(index);
            if (SlotInfo.IsDeduped(info))
            {
                _slots.Lock(index);
                info = CandidateInfo(index, _slots.Info(index));
                _slots.Unlock(index);
            }

            if (isCandidate(info))
            {
                counts[SizeBuckets.Of(SlotInfo.Size(info))]++;
            }
        }

        return SizeBuckets.MinimumSizes(counts, budget);
    }

    /// <summary>
    /// Before the slot lock, from a peek: a deduplicated slot's object is known only under the lock (its entry), so
    /// such a slot passes on its idle age alone, and <see cref="CandidateInfo"/> decides.
    /// </summary>
    private bool MayBeWritebackCandidate(uint peek, SlotSelection type, uint minAge, int classIndex)
        => SlotInfo.IsDeduped(peek)
            ? SlotInfo.IdleAge(peek) >= minAge && (!NeedsIdle(type) || SlotInfo.IsIdle(peek))
            : IsWritebackCandidate(peek, type, minAge, classIndex);

    /// <summary>As <see cref="MayBeWritebackCandidate"/>, for recompression.</summary>
    private static bool MayBeRecompressCandidate(uint peek, SlotSelection type)
        => SlotInfo.IsDeduped(peek) ? !NeedsIdle(type) || SlotInfo.IsIdle(peek) : IsRecompressCandidate(peek, type);

    private static bool NeedsIdle(SlotSelection type) => type is SlotSelection.Idle or SlotSelection.HugeIdle;

    /// <summary>Whether <paramref name="type"/> takes a slot holding an object described by <paramref name="info"/>.</summary>
    private static bool Selects(SlotSelection type, uint info) => type switch
    {
        SlotSelection.Idle => SlotInfo.IsIdle(info),
        SlotSelection.Huge => (info & SlotInfo.Huge) != 0,
        SlotSelection.HugeIdle => SlotInfo.IsIdle(info) && (info & SlotInfo.Huge) != 0,
        SlotSelection.Incompressible => (info & SlotInfo.Incompressible) != 0,
        _ => true,
    };

    /// <summary>
    /// What writeback and recompression judge a slot by (the slot lock is held): its info; for a deduplicated slot
    /// that no other slot shares, its entry's object's info with the slot's idle age; 0 (no candidate) for one that
    /// others share, whose object stays in the pool as it is.
    /// </summary>
    private uint CandidateInfo(int index, uint info)
        => !SlotInfo.IsDeduped(info) ? info
            : _dedup!.IsSole((int)_slots.Value(index), out uint objectInfo) ? objectInfo | (info & SlotInfo.IdleAgeMask) : 0;

    /// <summary>
    /// Before a writeback or recompression of a deduplicated slot that no other slot shares: its entry leaves the
    /// index and the slot holds the object itself, as it would without dedup (the page is cold, and a later write of
    /// the same bytes stores its own copy). Returns the slot's info then; 0 if another slot shared the entry since
    /// <see cref="CandidateInfo"/> looked; any other slot's info unchanged. The slot lock is held.
    /// </summary>
    private uint OwnObject(int index, uint info)
    {
        if (!SlotInfo.IsDeduped(info))
        {
            return info;
        }

        if (!_dedup!.TryTakeSole((int)_slots.Value(index), out uint handle, out uint objectInfo))
        {
            return 0;
        }

        uint owned = objectInfo | (info & SlotInfo.IdleAgeMask);
        _slots.Set(index, handle, owned);
        var delta = default(CounterDelta);
        delta.Add(info, owned); // the object's bytes move from the index's count to the device's
        delta.HugeSince = 0; // not a new huge page
        _counters.Apply(in delta);
        return owned;
    }

    private bool IsWritebackCandidate(uint info, SlotSelection type, uint minAge, int classIndex)
        => SlotInfo.HasObject(info) && SlotInfo.IdleAge(info) >= minAge
            && (classIndex < 0 || _pool.ClassIndexOf(SlotInfo.Size(info)) == classIndex)
            && Selects(type, info);

    private static bool IsRecompressCandidate(uint info, SlotSelection type)
        => SlotInfo.HasObject(info) && (info & (SlotInfo.Recompressed | SlotInfo.WritebackPending)) == 0 && Selects(type, info);

    /// <summary>
    /// Before a slice of recompression: the dictionary's compression tables, if there is a dictionary and they are not
    /// held, made when they fit under the limit (zstd's estimate first, then what they took). They cost megabytes at
    /// higher levels and count in mem_used_total: made at the limit whatever it was, they left every write to make
    /// room for them, or fail with ENOSPC without a backing file, for as long as the pass lasted. Room is not made for
    /// them by writeback: it would take the idle slots first, the very ones recompression is for. Without them the
    /// slice recompresses with the recompression algorithm alone. The recompression lock is held.
    /// </summary>
    private void PrepareCompressionTables()
    {
        ZstdDictionary? dictionary = _dictionary;
        if (dictionary is null || dictionary.HasCompressionTables || !RoomWithinLimit(dictionary.CompressionTablesBytes))
        {
            return;
        }

        _ = dictionary.CompressionTables();
        if (!RoomWithinLimit(0))
        {
            dictionary.ReleaseCompressionTables(); // writers took the room meanwhile
        }
    }

    /// <summary>
    /// The new, smaller object is allocated before the old one is freed, so it may take usage up to
    /// <see cref="RecompressionHeadroom"/> past mem_limit: a device full at its limit, the state recompression is for,
    /// needs a fresh page for the first smaller object whenever its class has no free slot, and refused that, a pass
    /// stopped at the first slot (the kernel's recompress_slot allocates without looking at the limit at all). Each
    /// old object freed gives the room back for the next. No compaction here: a later pass will try again.
    /// </summary>
    private bool TryAllocateForRecompression(int size, out uint handle)
    {
        long limit = Interlocked.Read(ref _memLimit);
        long within = limit == 0 || limit > long.MaxValue - RecompressionHeadroom ? limit : limit + RecompressionHeadroom;
        return TryAllocateWithin(PoolRequest.ForObject(size, -1), within, out handle, out _);
    }

    /// <summary>How far past mem_limit a recompression's new object may take usage before the old one is freed: the two
    /// fresh pages an object can straddle, and the page map (64 KiB) of a new arena, which one of them may open
    /// (<see cref="ZsPool.FirstObjectBytes"/>). A pool full at its limit may end at an arena's end, and then the new
    /// object opens the next arena, whose map counts from its first page: with two pages alone the pass stopped at its
    /// first slot.</summary>
    private const long RecompressionHeadroom = PageSize + ZsPool.FirstObjectBytes;

    private bool InRange(long offset, long length)
        => offset >= 0 && length >= 0 && offset <= _options.DiskSize && length <= _options.DiskSize - offset;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private NbdError Refuse()
    {
        Interlocked.Increment(ref _counters.InvalidIo);
        return NbdError.Invalid;
    }

    /// <summary>For a read of many pages: starts loading the next page's compressed object into the cache while
    /// this one is decompressed (the objects of consecutive pages lie apart in the pool, where the hardware
    /// prefetcher cannot guess them). Lock-free and only a hint: a slot that changes meanwhile costs nothing.</summary>
    private void PrefetchObject(int index)
    {
        _slots.Peek(index, out uint value, out uint info);
        if ((info & (SlotInfo.Written | SlotInfo.Same | SlotInfo.WrittenBack | SlotInfo.Deduped)) == SlotInfo.Written)
        {
            _pool.Prefetch(value, SlotInfo.Size(info));
        }
    }

    private NbdError ReadPage(int index, Span<byte> page)
    {
        _slots.Lock(index);
        try
        {
            return LoadPage(index, page);
        }
        finally
        {
            _slots.Unlock(index);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private NbdError ReadPartial(int index, int inPage, Span<byte> destination)
    {
        Span<byte> page = stackalloc byte[PageSize];
        NbdError error = ReadPage(index, page);
        if (error == NbdError.None)
        {
            page.Slice(inPage, destination.Length).CopyTo(destination);
        }

        return error;
    }

    /// <summary>Fills <paramref name="page"/> (4096 bytes) with the slot's contents, which makes it active again
    /// (idle age 0). The slot lock is held.</summary>
    private NbdError LoadPage(int index, Span<byte> page)
    {
        uint info = _slots.Info(index);
        if ((info & SlotInfo.IdleAgeMask) != 0)
        {
            _slots.SetInfo(index, info & ~SlotInfo.IdleAgeMask);
        }

        return LoadObject(index, info, _slots.Value(index), page);
    }

    /// <summary>Fills <paramref name="page"/> from what the slot holds (<paramref name="info"/>, <paramref name="value"/>). The slot lock is held.</summary>
    private NbdError LoadObject(int index, uint info, uint value, Span<byte> page)
    {
        if ((info & SlotInfo.Written) == 0)
        {
            page.Clear();
            return NbdError.None;
        }

        if ((info & SlotInfo.Same) != 0)
        {
            FillSame(page, (info & SlotInfo.SameInSlot) != 0 ? ((ulong)value << 32) | value : value == 0 ? 0 : _pool.ReadWord(value));
            return NbdError.None;
        }

        if ((info & SlotInfo.WrittenBack) != 0)
        {
            return ReadBack(index, info, value, page);
        }

        if ((info & SlotInfo.Deduped) != 0)
        {
            // The slot's reference keeps the entry and its object alive while the slot lock is held, and the read
            // keeps its handle where it is (a handle shrink waits for it).
            (uint handle, uint objectInfo) entry;
            lock (_dedup!.Lock)
            {
                entry = _dedup.BeginRead((int)value);
            }

            try
            {
                return LoadObject(index, entry.objectInfo, entry.handle, page);
            }
            finally
            {
                _dedup.EndRead();
            }
        }

        int size = SlotInfo.Size(info);
        // No scratch: the pool's views are always direct (its zspages are virtually contiguous), and a 4 KiB
        // stackalloc here was zeroed for every page read.
        using ZsReadView view = _pool.MapRead(value, size, default);
        if ((info & SlotInfo.Huge) != 0)
        {
            view.Span.CopyTo(page);
            return NbdError.None;
        }

        CompressionAlgorithm algorithm = SlotInfo.Algorithm(info);
        if (DecompressorFor(algorithm).Decompress(view.Span, page))
        {
            return NbdError.None;
        }

        ZramDeviceLog.DecompressFailed(_logger, Name, index, algorithm.ToString(), size);
        return NbdError.IO;
    }

    /// <summary>A written-back slot: its object from the backing file (zram's read_from_bdev). The slot lock is held.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private NbdError ReadBack(int index, uint info, uint block, Span<byte> page)
    {
        int size = SlotInfo.Size(info);
        Span<byte> scratch = stackalloc byte[PageSize];
        // A raw page (what was a huge slot) goes straight into the reply.
        Span<byte> data = size == PageSize ? page : scratch[..size];
        try
        {
            if (!_backing!.Read((long)block, data))
            {
                ZramDeviceLog.ReadBackFailed(_logger, null, Name, index, (long)block);
                return NbdError.IO;
            }
        }
        catch (IOException e)
        {
            ZramDeviceLog.ReadBackFailed(_logger, e, Name, index, (long)block);
            return NbdError.IO;
        }

        if (size == PageSize)
        {
            // A raw page is never all zeros (a zero page is same-filled, never stored): zeros are a hole, where the file
            // was cut and grew again under the device (RevWTruncatedFileTests). An error, never zeros for the data.
            if (data.ContainsAnyExcept((byte)0))
            {
                return NbdError.None;
            }

            ZramDeviceLog.ReadBackFailed(_logger, null, Name, index, (long)block);
            return NbdError.IO;
        }

        CompressionAlgorithm algorithm = SlotInfo.Algorithm(info);
        if (DecompressorFor(algorithm).Decompress(data, page))
        {
            return NbdError.None;
        }

        ZramDeviceLog.DecompressFailed(_logger, Name, index, algorithm.ToString(), size);
        return NbdError.IO;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private NbdError WritePartial(int index, int inPage, ReadOnlySpan<byte> data)
    {
        Span<byte> page = stackalloc byte[PageSize];
        _slots.Lock(index);
        try
        {
            NbdError error = LoadPage(index, page);
            if (error != NbdError.None)
            {
                return error;
            }

            data.CopyTo(page[inPage..]);
            return StoreModifiedPage(index, page);
        }
        finally
        {
            _slots.Unlock(index);
        }
    }

    /// <summary>
    /// Stores a slot's page changed in part (a partial write or write-zeroes), with the slot lock held. At the limit the
    /// write path writes other slots back, passing over locked ones: this one is, by us, and it may be the only one
    /// whose going makes room. Its old object goes to the file (the slot still reads as before should the store fail
    /// again), and the store tries again in the room it left.
    /// </summary>
    private NbdError StoreModifiedPage(int index, ReadOnlySpan<byte> page)
    {
        NbdError error = StorePage(index, page, lockHeld: true);
        if (error == NbdError.NoSpace && _backing is not null
            && WritebackLocked(index, SlotSelection.All, minAge: 0, classIndex: -1, out _) == WritebackOutcome.WrittenBack)
        {
            error = StorePage(index, page, lockHeld: true);
        }

        return error;
    }

    /// <summary>Stores a whole page into the slot. Without <paramref name="lockHeld"/>, the slot lock is taken only for the swap.</summary>
    private NbdError StorePage(int index, ReadOnlySpan<byte> page, bool lockHeld)
    {
        uint info;
        uint value;
        if (IsSameFilled(page, out ulong element))
        {
            NbdError error = StoreSameFilled(index, element, out value, out info);
            if (error != NbdError.None)
            {
                return error;
            }
        }
        else if (_dedup is not null)
        {
            NbdError error = StoreDeduplicated(index, page, out value, out info, out bool huge);
            if (error != NbdError.None)
            {
                return error;
            }

            if (huge && SlotInfo.IsDeduped(info))
            {
                // huge_pages_since counts incompressible pages written; a deduplicated slot's info does not say so.
                Interlocked.Increment(ref _counters.HugePagesSince);
            }
        }
        else
        {
            Compressor compressor = _compressor;
            using CompressionStreamLease lease = compressor.Acquire();
            int n = lease.Stream.Compress(page, _maxCompressedSize);
            ReadOnlySpan<byte> data = n > 0 ? lease.Stream.Buffer[..n] : page;
            NbdError error = Allocate(PoolRequest.ForObject(data.Length, index), out value);
            if (error != NbdError.None)
            {
                return error;
            }

            _pool.Write(value, data);
            info = n > 0 ? SlotInfo.Compressed(n, compressor.Algorithm) : SlotInfo.Raw();
        }

        Swap(index, info, value, lockHeld, out uint oldInfo, out uint oldValue);
        Release(oldInfo, oldValue, deferred: true);
        _counters.Replace(oldInfo, info);
        return NbdError.None;
    }

    /// <summary>
    /// The dedup write: an entry whose page has the same hash and the same bytes gets one more reference; else the
    /// page is compressed and stored as usual and becomes a new entry. Returns the entry id in <paramref name="value"/>.
    /// Compression runs outside the index lock, so another writer of the same page may add it meanwhile (nbdcopy's
    /// connections writing one file twice do): the index is searched again before adding, and the copy just
    /// stored is freed if that one can be shared. The slot's info goes to <paramref name="info"/>: a reference to the
    /// entry, or, when the index would have to grow past the memory limit, the object's own (the slot then holds it
    /// outside the index, as one taken out by writeback does: the arrays double, and at the limit that jump would
    /// leave every write to make room for it, or fail with ENOSPC without a backing file).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private NbdError StoreDeduplicated(int index, ReadOnlySpan<byte> page, out uint value, out uint info, out bool huge)
    {
        uint hash = DedupIndex.Hash(page);
        Span<byte> candidate = stackalloc byte[PageSize];
        uint sharedInfo;
        info = SlotInfo.DedupReference();
        lock (_dedup!.Lock)
        {
            if (TryShare(index, hash, page, candidate, out value, out sharedInfo))
            {
                huge = (sharedInfo & SlotInfo.Huge) != 0;
                return NbdError.None;
            }
        }

        // The stream is given back before anything that may wait for the index lock (a limit's writeback looks at
        // entries; the second search below decompresses under it): the output goes to the candidate buffer first.
        Compressor compressor = _compressor;
        int n;
        using (CompressionStreamLease lease = compressor.Acquire())
        {
            n = lease.Stream.Compress(page, _maxCompressedSize);
            lease.Stream.Buffer[..n].CopyTo(candidate);
        }

        huge = n == 0;
        ReadOnlySpan<byte> data = n > 0 ? candidate[..n] : page;
        NbdError error = Allocate(PoolRequest.ForObject(data.Length, index), out uint stored);
        if (error != NbdError.None)
        {
            value = 0;
            return error;
        }

        _pool.Write(stored, data);
        uint objectInfo = n > 0 ? SlotInfo.Compressed(n, compressor.Algorithm) : SlotInfo.Raw();
        bool shared;
        lock (_dedup.Lock)
        {
            shared = TryShare(index, hash, page, candidate, out value, out _);
            if (!shared)
            {
                long growth = _dedup.GrowthBytes;
                if (growth == 0 || RoomWithinLimit(growth))
                {
                    value = (uint)_dedup.Add(hash, stored, objectInfo);
                }
                else
                {
                    value = stored;
                    info = objectInfo;
                }
            }
        }

        if (shared)
        {
            _pool.Free(stored);
        }

        return NbdError.None;
    }

    /// <summary>Adds a reference to an entry holding exactly <paramref name="page"/>, if there is one (its object is
    /// described by <paramref name="objectInfo"/>). The index lock is held.</summary>
    private bool TryShare(int index, uint hash, ReadOnlySpan<byte> page, Span<byte> candidate, out uint value, out uint objectInfo)
    {
        for (int id = _dedup!.First(hash); id >= 0; id = _dedup.Next(id))
        {
            (uint handle, objectInfo) = _dedup.Get(id);
            if (LoadObject(index, objectInfo, handle, candidate) == NbdError.None && candidate.SequenceEqual(page))
            {
                _dedup.AddReference(id);
                value = (uint)id;
                return true;
            }
        }

        value = 0;
        objectInfo = 0;
        return false;
    }

    /// <summary>
    /// A same-filled page's value: in the slot when its halves are equal (zeros, all ones, a repeated 32-bit integer),
    /// else in a pool word (a handle cell, no object), which counts against the memory limit like an object.
    /// </summary>
    private NbdError StoreSameFilled(int index, ulong element, out uint value, out uint info)
    {
        if ((uint)element == (uint)(element >> 32))
        {
            value = (uint)element;
            info = value == 0 ? SlotInfo.SameFilled() : SlotInfo.SameFilledInSlot();
            return NbdError.None;
        }

        info = SlotInfo.SameFilled();
        return Allocate(PoolRequest.ForWord(element, index), out value);
    }

    private void Swap(int index, uint info, uint value, bool lockHeld, out uint oldInfo, out uint oldValue)
    {
        if (!lockHeld)
        {
            _slots.Lock(index);
        }

        oldInfo = _slots.Info(index);
        oldValue = _slots.Value(index);
        _slots.Set(index, value, info);
        if (!lockHeld)
        {
            _slots.Unlock(index);
        }
    }

    /// <summary>Frees what an old slot state held, once no slot names it any more.</summary>
    private void Release(uint info, uint value, bool deferred)
    {
        if (SlotInfo.HasObject(info))
        {
            if (deferred)
            {
                _pool.FreeDeferred(value);
            }
            else
            {
                _pool.Free(value);
            }
        }
        else if (SlotInfo.HasWord(info, value))
        {
            // A word free is one leaf-locked list push: nothing to gain from deferring it.
            _pool.FreeWord(value);
        }
        else if (SlotInfo.IsWrittenBack(info))
        {
            // Punched by the background tick, runs of blocks at a time (BackingFile's header): deferred or not, a
            // free of a block is a bit set, and this one is never written again before then.
            _backing!.FreeLater(value);
        }
        else if (SlotInfo.IsDeduped(info) && _dedup!.Release((int)value, out uint handle, out _))
        {
            if (deferred)
            {
                _pool.FreeDeferred(handle);
            }
            else
            {
                _pool.Free(handle);
            }
        }
    }

    /// <summary>Empties the slot (unwritten again) and frees what it held now.</summary>
    private void ClearSlot(int index)
    {
        _slots.Take(index, out uint oldValue, out uint oldInfo);
        Release(oldInfo, oldValue, deferred: false);
        _counters.Replace(oldInfo, 0);
    }

    /// <summary>Takes what <paramref name="request"/> asks of the pool, within the memory limit (see the header).</summary>
    private NbdError Allocate(PoolRequest request, out uint handle)
    {
        long limit = Interlocked.Read(ref _memLimit);
        if (TryAllocateWithin(request, limit, out handle, out NbdError error))
        {
            if (PastWatermark(limit))
            {
                _compactor.Kick();
            }

            return NbdError.None;
        }

        return error == NbdError.NoSpace ? AllocateAfterCompaction(request, limit, out handle) : error;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private NbdError AllocateAfterCompaction(PoolRequest request, long limit, out uint handle)
    {
        // First what is only waiting to be freed (trimmed and overwritten pages), which is cheap.
        _pool.FlushDeferred();
        if (TryAllocateWithin(request, limit, out handle, out NbdError error) || error != NbdError.NoSpace)
        {
            return error;
        }

        // Then, with a backing file, room in the class this object needs: a swap user gets slower reads, not ENOSPC.
        // A word needs a handle cell, which any object written back gives up.
        bool wroteBack = false;
        if (_backing is not null)
        {
            if (!request.IsWord)
            {
                int classIndex = _pool.ClassIndexOf(request.Size);
                for (int attempt = 0; attempt < 4 && WritebackForRoom(classIndex, request.Slot) == WritebackOutcome.WrittenBack; attempt++)
                {
                    wroteBack = true;
                    if (TryAllocateWithin(request, limit, out handle, out error) || error != NbdError.NoSpace)
                    {
                        return error;
                    }
                }
            }

            if (FreePagesByWriteback(request, limit, ref wroteBack, out handle, out error))
            {
                return error;
            }
        }

        // Then compaction, unless one just ran here and found nothing (and nothing was written back since): a
        // device kept full would otherwise compact the whole pool on every write.
        long now = Stopwatch.GetTimestamp();
        long last = Interlocked.Read(ref _futileLimitCompaction);
        if (wroteBack || last == 0 || Stopwatch.GetElapsedTime(last, now) >= _options.CompactInterval)
        {
            long freed = CompactCore("mem_limit");
            Interlocked.Exchange(ref _futileLimitCompaction, freed == 0 ? now : 0);
            if (TryAllocateWithin(request, limit, out handle, out error) || error != NbdError.NoSpace)
            {
                return error;
            }
        }

        ZramDeviceLog.LimitReached(_logger, Name, MemUsedTotal, limit);
        return NbdError.NoSpace;
    }

    /// <summary>An object of the request's size, or a handle cell holding its word; NoMemory when the pool has no room left at all.</summary>
    private NbdError Take(PoolRequest request, out uint handle)
    {
        try
        {
            handle = request.IsWord ? _pool.StoreWord(request.Word) : _pool.Malloc(request.Size);
            return NbdError.None;
        }
        catch (OutOfMemoryException)
        {
            handle = 0;
            return NbdError.NoMemory;
        }
    }

    /// <summary>Undoes <see cref="Take"/>: what the pool's metadata grew by for it goes too (a new handle cell).</summary>
    private void GiveBack(PoolRequest request, uint handle)
    {
        if (request.IsWord)
        {
            _pool.RetractWord(handle);
        }
        else
        {
            _pool.Retract(handle);
        }
    }

    /// <summary>Whether <paramref name="bytes"/> more stay within the limit (or no limit is set): the deferred-free
    /// queue asks before it counts another page of entries, which it would do after the write's own check.</summary>
    private bool RoomWithinLimit(long bytes)
    {
        long limit = Interlocked.Read(ref _memLimit);
        return limit == 0 || MemUsedTotal + bytes <= limit;
    }

    /// <summary>Whether a limit is set and mem_used_total is at or past its compaction watermark.</summary>
    private bool PastWatermark(long limit) => limit > 0 && AtPercent(MemUsedTotal, limit, _options.CompactWatermarkPercent);

    /// <summary>Allocates if the result stays within <paramref name="limit"/> (0: none); error is NoSpace when it would
    /// not, and what the allocation took is retracted.</summary>
    private bool TryAllocateWithin(PoolRequest request, long limit, out uint handle, out NbdError error)
    {
        error = Take(request, out handle);
        if (error != NbdError.None)
        {
            return false;
        }

        if (limit == 0)
        {
            // A word takes a handle cell and no pool page: no page peak notes it.
            if (request.IsWord)
            {
                RaiseMemUsedMax(MemUsedTotal);
            }

            return true;
        }

        // Noted before the check, as the kernel's update_used_max: usage that rose to the limit through metadata alone
        // (words) made no page peak, and a device that got ENOSPC at its limit showed a mem_used_max below it.
        long used = MemUsedTotal;
        RaiseMemUsedMax(used);
        if (used <= limit)
        {
            return true;
        }

        GiveBack(request, handle);
        handle = 0;
        error = NbdError.NoSpace;
        return false;
    }

    /// <summary>TRIM and WRITE_ZEROES: whole slots are emptied (or made zero-filled), partial ones zeroed in place (for
    /// a TRIM, only where the zeroed page fits under the memory limit).</summary>
    private NbdError ZeroRange(long offset, long length, bool keepAllocated, bool discard)
    {
        if (IsReadOnly)
        {
            return NbdError.NotPermitted;
        }

        if (!InRange(offset, length))
        {
            return Refuse();
        }

        long end = offset + length;
        while (offset < end)
        {
            int index = (int)(offset >> PageShift);
            int inPage = (int)(offset & PageMask);
            if (inPage == 0 && end - offset >= PageSize)
            {
                int count = (int)Math.Min((end - offset) >> PageShift, ZeroBatch);
                ZeroSlots(index, count, keepAllocated);
                offset += (long)count << PageShift;
                continue;
            }

            int n = (int)Math.Min(PageSize - inPage, end - offset);
            NbdError error = ZeroPartial(index, inPage, n, discard);
            // A trim is a hint (the client may assume nothing of the range afterwards), and one at the memory limit
            // is how a client makes room: a partial slot whose zeroed page does not fit, or cannot be read (a
            // written-back page whose block reads back short), stays as it was, and the rest of the range is still
            // trimmed, as the kernel's discard skips partial pages and never fails. WRITE_ZEROES is a write and fails
            // like one.
            if (discard)
            {
                error = NbdError.None;
            }

            if (error != NbdError.None)
            {
                Interlocked.Increment(ref _counters.FailedWrites);
                return error;
            }

            offset += n;
        }

        return NbdError.None;
    }

    /// <summary>Whole slots <see cref="ZeroSlots"/> empties before it hands their objects to the pool (1 MiB).</summary>
    private const int ZeroBatch = 256;

    /// <summary>
    /// Empties <paramref name="count"/> whole slots (or makes them zero-filled, NO_HOLE), doing per slot only what must
    /// be done under it: take its contents (one compare-and-swap) and note its object. The objects then go to the pool's
    /// deferred-free queue in one batch (<see cref="ZsPool.FreeDeferred(ReadOnlySpan{uint}, ReadOnlySpan{int})"/>:
    /// one lock hold, no handle cell touched; what the queue cannot take, or all of it with the queue off, is freed
    /// synchronously there), and the counters change by one atomic add each for the batch. Words, written-back blocks and
    /// dedup references are released as one slot's would be; a dedup entry's object is freed (batched with the others)
    /// only when its last reference goes, so the other slots sharing it keep their data.
    /// </summary>
    private void ZeroSlots(int first, int count, bool keepAllocated)
    {
        Span<uint> handles = stackalloc uint[ZeroBatch];
        Span<int> sizes = stackalloc int[ZeroBatch];
        int objects = 0;
        long discarded = 0;
        var delta = default(CounterDelta);
        uint newInfo = keepAllocated ? SlotInfo.SameFilled() : 0;
        for (int index = first; index < first + count; index++)
        {
            uint oldInfo, oldValue;
            if (keepAllocated)
            {
                // NO_HOLE: a stored zero page, which costs nothing in the pool (same-filled with value 0).
                Swap(index, newInfo, 0, lockHeld: false, out oldInfo, out oldValue);
            }
            else
            {
                if ((_slots.PeekInfo(index) & SlotInfo.Written) == 0)
                {
                    continue;
                }

                _slots.Take(index, out oldValue, out oldInfo);
                if ((oldInfo & SlotInfo.Written) == 0)
                {
                    continue;
                }

                discarded++;
            }

            delta.Add(oldInfo, newInfo);
            uint handle = oldValue;
            uint objectInfo = oldInfo;
            if (SlotInfo.IsDeduped(oldInfo))
            {
                if (!_dedup!.Release((int)oldValue, out handle, out objectInfo))
                {
                    continue;
                }
            }
            else if (!SlotInfo.HasObject(oldInfo))
            {
                Release(oldInfo, oldValue, deferred: true);
                continue;
            }

            handles[objects] = handle;
            sizes[objects++] = SlotInfo.Size(objectInfo);
        }

        _pool.FreeDeferred(handles[..objects], sizes[..objects]);
        _counters.Apply(in delta);
        // Per whole page of a TRIM or WRITE_ZEROES, as the kernel's zram_bio_discard (which serves both) counts.
        Interlocked.Add(ref _counters.NotifyFree, count);

        if (discarded != 0)
        {
            Interlocked.Add(ref _counters.DiscardedPages, discarded);
        }
    }

    /// <summary>Zeroes part of a slot. A trim that leaves the whole page zero (the last of several partial trims
    /// covering it, or any of a stored zero page) empties the slot as a whole-slot trim does, rather than keeping a
    /// stored zero page counted in pages_stored and same_pages.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private NbdError ZeroPartial(int index, int inPage, int length, bool discard)
    {
        Span<byte> page = stackalloc byte[PageSize];
        _slots.Lock(index);
        try
        {
            uint info = _slots.Info(index);
            if (SlotInfo.IsZero(info, _slots.Value(index)))
            {
                // A stored zero page (written as data, or NO_HOLE zeroes) is left all zero by a trim too.
                if (discard && (info & SlotInfo.Written) != 0)
                {
                    EmptyTrimmedSlot(index);
                }

                return NbdError.None;
            }

            NbdError error = LoadPage(index, page);
            if (error != NbdError.None)
            {
                return error;
            }

            page.Slice(inPage, length).Clear();
            if (discard && page.IndexOfAnyExcept((byte)0) < 0)
            {
                EmptyTrimmedSlot(index);
                return NbdError.None;
            }

            return StoreModifiedPage(index, page);
        }
        finally
        {
            _slots.Unlock(index);
        }
    }

    /// <summary>Empties a slot a partial trim left all zero, as a whole-slot trim does. The slot lock is held.</summary>
    private void EmptyTrimmedSlot(int index)
    {
        Swap(index, 0, 0, lockHeld: true, out uint oldInfo, out uint oldValue);
        Release(oldInfo, oldValue, deferred: true);
        _counters.Replace(oldInfo, 0);
        Interlocked.Increment(ref _counters.NotifyFree);
        Interlocked.Increment(ref _counters.DiscardedPages);
    }

    /// <summary>A slot records the algorithm of the compressor that wrote it, which was registered here first.</summary>
    internal Compressor DecompressorFor(CompressionAlgorithm algorithm) => Volatile.Read(ref _decompressors[(int)algorithm])!;

    /// <summary>page_same_filled: the page is one 8-byte value repeated (most often zero).</summary>
    internal static bool IsSameFilled(ReadOnlySpan<byte> page, out ulong value)
    {
        ReadOnlySpan<ulong> words = MemoryMarshal.Cast<byte, ulong>(page);
        value = words[0];
        // Checking the last word first rejects most pages at once, as the kernel does.
        return words[^1] == value && words.IndexOfAnyExcept(value) < 0;
    }

    private static void FillSame(Span<byte> page, ulong value)
    {
        if (value == 0)
        {
            page.Clear();
        }
        else
        {
            MemoryMarshal.Cast<byte, ulong>(page).Fill(value);
        }
    }
}
