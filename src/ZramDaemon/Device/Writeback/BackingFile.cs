using System.Numerics;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using ZramDaemon.Native;

namespace ZramDaemon.Device.Writeback;

/// <summary>
/// zram's backing_dev, as a file: written-back slots live here, one 4 KiB block each (the slot keeps the block
/// number), holding the slot's object as it was in the pool (compressed, or the raw page of a huge slot).
/// A bitmap says which blocks are in use (zram's bitmap); allocation and freeing are lock-free. A freed block is
/// punched out of the file (fallocate PUNCH_HOLE) before its bit is cleared, so the file holds only live data and
/// a block is never punched after someone else took it. Slots give their blocks back with <see cref="FreeLater"/>,
/// which only marks them in a second bitmap; <see cref="PunchFreed"/> (the device's background tick, a reset, a write
/// the filesystem refuses) punches
/// each run of neighbouring marked blocks with one fallocate and then clears their bits: a punch cost ext4 about
/// 140 us a block here, so a reset of 102,400 written-back pages took 14 s (a probe's 76,752 took 70 s under load,
/// past the CLI's 30 s), a 32 MiB trim of written-back pages 1.1 s of its connection, and an overwrite of one a
/// syscall on the write path.
///
/// The file is created afresh, sparse and 0600, when the device starts (what was in it means nothing without the
/// slot table that was in memory), and deleted when the device is disposed. It is locked (flock) before anything in
/// it is cut: a file another process holds, another zramd's, is left as it is (<see cref="BackingFileInUseException"/>).
/// Past its blocks it ends in <see cref="Trailer"/>, written as it is made: a file found at the path is emptied only
/// when it ends so (one a zramd that died left) or is empty; any other is refused whole, so that a path mistyped or
/// pointing through a link at someone's file costs no file (it cost /etc/passwd in a probe). Nothing is fsync'ed: like the pages
/// in RAM, written-back pages are meant to live as long as the daemon. Each page written counts 4096 bytes against
/// the daily limit (what the filesystem writes for it), for flash wear.
/// </summary>
internal sealed class BackingFile : IDisposable
{
    public const int BlockSize = 4096;
    private const int BlockShift = 12;

    private readonly SafeFileHandle _file;
    private readonly ulong[] _used;
    private readonly ulong[] _freed; // given back by FreeLater, not punched yet: their bits in _used stay set till then
    private long _freedCount;
    private readonly Lock _punchLock = new();
    private readonly long _blocks;
    private long _dailyLimitBytes;
    private readonly Func<long> _clock;
    private readonly Lock _budgetLock = new();
    private int _hint;
    private long _count;
    private long _reads;
    private long _writes;
    private int _cached; // 1 once a read or write may have left pages in the page cache (DropCached)
    private int _busy; // 1 once a read or write came since the last DropCachedIfIdle
    private long _punchFailures;
    private long _punches;
    private long _windowStart;
    private long _windowBytes;
    private bool _disposed;
    private readonly Lock _writeLock = new();
    private readonly Configuration.FileIdentity _identity; // the file as made, so that exit deletes only that one

    /// <summary>What ends every backing file, past its blocks: how a file found at the path is known for one a zramd made.</summary>
    public static ReadOnlySpan<byte> Trailer => "\nzramd writeback file: pages of a compressed RAM device, meaningless without the daemon that wrote them\n"u8;

    /// <param name="path">The file; emptied if it exists and is empty or a backing file (ends in <see cref="Trailer"/>).</param>
    /// <param name="blocks">Blocks it may hold: one per slot of the device is always enough.</param>
    /// <param name="dailyLimitBytes">Bytes that may be written per 24 hours (0: no limit).</param>
    /// <param name="clock">Seconds since some fixed point, for the daily window (tests pass their own).</param>
    public BackingFile(string path, long blocks, long dailyLimitBytes, Func<long>? clock = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blocks);
        ArgumentOutOfRangeException.ThrowIfNegative(dailyLimitBytes);
        if (OperatingSystem.IsWindows())
        {
            throw new PlatformNotSupportedException("zramd runs on Linux");
        }

        // As the loader resolves it: a link's .. is the parent of its target, not the link's own directory.
        Path = Configuration.FilePath.TryGetFullPath(path, out string? fullPath, out string error) ? fullPath : throw new IOException($"{path}: {error}");
        _blocks = blocks;
        _dailyLimitBytes = dailyLimitBytes;
        _clock = clock ?? (() => Environment.TickCount64 / 1000);
        _used = new ulong[(blocks + 63) >> 6];
        _freed = new ulong[_used.Length];

        // Before opening: an open alone does things to what is not a file (arms a watchdog, takes a terminal).
        Span<byte> statx = stackalloc byte[Interop.Libc.StatxBufferSize];
        if (Interop.Libc.Statx(Interop.Libc.AtFdCwd, Path, 0, Interop.Libc.StatxBasicStats, statx) == 0)
        {
            CheckRegular(statx, Path);
        }

        _file = OpenLocked(Path);
        try
        {
            CheckOurs(_file, Path);

            // Created by someone else before us, the file may have kept a wider mode: it will hold swap data.
            File.SetUnixFileMode(_file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            RandomAccess.SetLength(_file, 0);
            try
            {
                // One write makes the file its whole (sparse) length and marks it ours, and is made durable: a crash,
                // even a power cut, leaves it empty or marked.
                RandomAccess.Write(_file, Trailer, blocks << BlockShift);
                Interop.Libc.Fsync(_file);
            }
            catch (IOException)
            {
                // No room for the trailer's block (a full filesystem, a quota): the device starts all the same, its
                // writeback failing until there is room, as before the trailer; the file is left unmarked.
                RandomAccess.SetLength(_file, blocks << BlockShift);
                Unmarked = true;
            }

            // Freed blocks are punched out; a filesystem that cannot (ramfs, some FUSE and network ones) keeps them
            // allocated until reused, which the owner says once, at start, rather than each free counting silently.
            PunchesHoles = Interop.Libc.Fallocate(_file, Interop.Libc.FallocFlPunchHole | Interop.Libc.FallocFlKeepSize, 0, BlockSize) == 0;

            // The file itself, where a symlink at the path points: the one exit deletes (the link is the admin's).
            FilePath = new FileInfo($"/proc/self/fd/{_file.DangerousGetHandle().ToInt32().ToString(System.Globalization.CultureInfo.InvariantCulture)}").LinkTarget ?? Path;
            _identity = Configuration.FileIdentity.Of(FilePath);
        }
        catch
        {
            _file.Dispose();
            throw;
        }

        _windowStart = _clock();
    }

    /// <summary>The path as configured (full).</summary>
    public string Path { get; }

    /// <summary>The file's own path: <see cref="Path"/>, or where a symlink there points.</summary>
    public string FilePath { get; }

    /// <summary>Whether the filesystem punches holes: without, a freed block stays allocated in the file until reused.</summary>
    public bool PunchesHoles { get; }

    /// <summary>The trailer could not be written (no room at start): a zramd that dies leaves a file the next start
    /// refuses until it is removed.</summary>
    public bool Unmarked { get; }

    /// <summary>zram's bd_count: blocks in use, in pages (not those given back and waiting for their punch).</summary>
    public long Count => Interlocked.Read(ref _count) - Interlocked.Read(ref _freedCount);

    /// <summary>Blocks given back with <see cref="FreeLater"/> and not punched out yet.</summary>
    public long FreedUnpunched => Interlocked.Read(ref _freedCount);

    /// <summary>zram's bd_reads: reads of pages from the file, counted as they are issued (read_from_bdev), so a read
    /// that fails counts too.</summary>
    public long Reads => Interlocked.Read(ref _reads);

    /// <summary>zram's bd_writes: pages written to the file.</summary>
    public long Writes => Interlocked.Read(ref _writes);

    /// <summary>Zeroes bd_reads and bd_writes (a device reset). The day's writeback budget stays spent: a reset must
    /// not buy more writes to the flash.</summary>
    public void ResetCounters()
    {
        Interlocked.Exchange(ref _reads, 0);
        Interlocked.Exchange(ref _writes, 0);
    }

    /// <summary>fallocate calls that punched freed blocks out (a run of blocks given back together takes one).</summary>
    public long Punches => Interlocked.Read(ref _punches);

    /// <summary>Freed blocks the filesystem would not punch out (they stay allocated in the file until reused).</summary>
    public long PunchFailures => Interlocked.Read(ref _punchFailures);

    /// <summary>
    /// Bytes that may be written per 24 hours (0: no limit); <c>zramd set NAME writeback_limit=SIZE</c> changes it.
    /// What the current 24 hours already wrote stays counted: lowering the limit below it stops writeback until
    /// the window ends, and raising it allows only the difference.
    /// </summary>
    public long DailyLimitBytes
    {
        get => Volatile.Read(ref _dailyLimitBytes);
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            lock (_budgetLock)
            {
                Volatile.Write(ref _dailyLimitBytes, value);
            }
        }
    }

    /// <summary>Bytes the daily limit still allows in the current 24 hours (long.MaxValue without a limit).</summary>
    public long BudgetLeft
    {
        get
        {
            lock (_budgetLock)
            {
                if (_dailyLimitBytes == 0)
                {
                    return long.MaxValue;
                }

                RollWindow();
                return Math.Max(0, _dailyLimitBytes - _windowBytes);
            }
        }
    }

    /// <summary>Bytes written to the file in the current 24 hours (4096 a page), what the daily limit counts.</summary>
    public long WrittenToday
    {
        get
        {
            lock (_budgetLock)
            {
                RollWindow();
                return _windowBytes;
            }
        }
    }

    /// <summary>Takes one page's worth of the daily limit; false when today's is used up (with
    /// <paramref name="overdraft"/>, taken anyway: for a page whose own is held elsewhere and will be given back).
    /// <paramref name="window"/>: the 24 hours it was taken from, for <see cref="ReturnBudget"/>.</summary>
    public bool TryTakeBudget(out long window, bool overdraft = false)
    {
        // Counted without a limit too, so that a limit set later knows what today wrote (a lock per page written to
        // the file costs nothing beside the write).
        lock (_budgetLock)
        {
            RollWindow();
            window = _windowStart;
            if (_dailyLimitBytes != 0 && _windowBytes + BlockSize > _dailyLimitBytes && !overdraft)
            {
                return false;
            }

            _windowBytes += BlockSize;
            return true;
        }
    }

    /// <summary>Gives back the page <see cref="TryTakeBudget"/> took from <paramref name="window"/> for a write that did
    /// not happen (no block, the write failed, the slot changed): as the kernel, which counts a page against
    /// writeback_limit once it is written. A page of a window that has ended goes nowhere: given to the new one, it
    /// would let that one write past its limit (a batch's worth at each roll).</summary>
    public void ReturnBudget(long window)
    {
        lock (_budgetLock)
        {
            RollWindow();
            if (window == _windowStart)
            {
                _windowBytes -= BlockSize;
            }
        }
    }

    /// <summary>A free block, now marked used; -1 when every block is in use (after punching those given back).</summary>
    public long Allocate()
    {
        long block = TryAllocate();
        if (block < 0 && FreedUnpunched > 0)
        {
            PunchFreed();
            block = TryAllocate();
        }

        return block;
    }

    private long TryAllocate()
    {
        int words = _used.Length;
        int start = Volatile.Read(ref _hint);
        for (int i = 0; i < words; i++)
        {
            int w = start + i < words ? start + i : start + i - words;
            ulong bits = Volatile.Read(ref _used[w]);
            while (true)
            {
                // Not a block still marked given back: PunchRun frees its bit in use before its mark (read after).
                ulong taken = bits | Volatile.Read(ref _freed[w]);
                if (taken == ulong.MaxValue)
                {
                    break;
                }

                int bit = BitOperations.TrailingZeroCount(~taken);
                long block = ((long)w << 6) + bit;
                if (block >= _blocks)
                {
                    break;
                }

                ulong seen = Interlocked.CompareExchange(ref _used[w], bits | (1UL << bit), bits);
                if (seen == bits)
                {
                    Volatile.Write(ref _hint, w);
                    Interlocked.Increment(ref _count);
                    return block;
                }

                bits = seen;
            }
        }

        return -1;
    }

    /// <summary>
    /// Writes an object into its block (at most 4096 bytes, from the block's start) and waits until the filesystem has
    /// written it: the kernel's writeback waits for its bio (submit_bio_wait), so a failed write keeps the slot in
    /// memory. A write to the page cache alone succeeds at once and may fail later, when the page is written out (a full
    /// thin-provisioned disk, an I/O error), and the page is then gone while the caller has freed the pool object
    /// (RevWLateWriteErrorTests: pages read back as zeros). sync_file_range's wait reports that error here.
    /// </summary>
    /// <exception cref="IOException">The filesystem refused (full, I/O error, a write refused: EPERM, EFBIG).</exception>
    public void Write(long block, ReadOnlySpan<byte> data)
    {
        int size = data.Length;
        bool failed = false;
        if (WriteBlocks(new ReadOnlySpan<long>(in block), new ReadOnlySpan<int>(in size), data, new Span<bool>(ref failed)) is { } error)
        {
            throw error;
        }
    }

    /// <summary>
    /// <see cref="Write"/> for a batch: object i (<paramref name="sizes"/>[i] bytes of <paramref name="data"/> from
    /// i * <see cref="BlockSize"/>) into <paramref name="blocks"/>[i], then one wait for them all. A write the filesystem
    /// refuses at once (full, EPERM, EFBIG) fails its block alone; the wait reports the file's error record, not a block's,
    /// so a failure it reports fails every block of the batch. <paramref name="failed"/>[i]: block i was not written.
    /// Returns the last error, null when every block was written.
    /// </summary>
    public IOException? WriteBlocks(ReadOnlySpan<long> blocks, ReadOnlySpan<int> sizes, ReadOnlySpan<byte> data, Span<bool> failed)
    {
        if (blocks.Length != sizes.Length || failed.Length < blocks.Length)
        {
            throw new ArgumentException($"{blocks.Length} blocks, {sizes.Length} sizes, {failed.Length} failure marks and {data.Length} bytes of data do not match");
        }

        long first = long.MaxValue, last = -1;
        for (int i = 0; i < blocks.Length; i++)
        {
            CheckBlock(blocks[i], sizes[i]);
            if ((long)i * BlockSize + sizes[i] > data.Length)
            {
                throw new ArgumentException($"object {i} of {sizes[i]} bytes lies past the {data.Length} bytes of data");
            }

            first = Math.Min(first, blocks[i]);
            last = Math.Max(last, blocks[i]);
            failed[i] = false;
        }

        if (blocks.IsEmpty)
        {
            return null;
        }

        IOException? error = null;
        int written = 0;
        // One batch and its wait at a time (and DropCached's): the wait reports the file's error record, not these
        // blocks', and reports each error once, to whoever looks first; with two batches in flight one could be told of
        // the other's failure and the other freed its pool objects on "success" (RevXConcurrentLateWriteErrorTests).
        lock (_writeLock)
        {
            Volatile.Write(ref _cached, 1);
            for (int i = 0; i < blocks.Length; i++)
            {
                try
                {
                    try
                    {
                        RandomAccess.Write(_file, data.Slice(i * BlockSize, sizes[i]), blocks[i] << BlockShift);
                    }
                    catch (IOException) when (FreedUnpunched > 0)
                    {
                        // A full filesystem, with room in blocks given back and not punched yet (a trim, then a
                        // writeback before the tick): that room first, then once more.
                        PunchFreed();
                        RandomAccess.Write(_file, data.Slice(i * BlockSize, sizes[i]), blocks[i] << BlockShift);
                    }

                    written++;
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentOutOfRangeException)
                {
                    // EPERM/EACCES (an immutable file) and EFBIG come as the latter two: a failed write all the same.
                    failed[i] = true;
                    error = new IOException($"writing block {blocks[i]} of {Path} failed: {e.Message}", e);
                }
            }

            if (written > 0 && Interop.Libc.SyncFileRange(_file, first << BlockShift, (last - first + 1) << BlockShift,
                    Interop.Libc.SyncFileRangeWaitBefore | Interop.Libc.SyncFileRangeWrite | Interop.Libc.SyncFileRangeWaitAfter) != 0)
            {
                error = new IOException(blocks.Length == 1
                    ? $"writing block {first} of {Path} failed: {Interop.Libc.Describe(Marshal.GetLastPInvokeError())}"
                    : $"writing blocks {first}-{last} of {Path} failed: {Interop.Libc.Describe(Marshal.GetLastPInvokeError())}");
                failed[..blocks.Length].Fill(true);
                written = 0;
            }
        }

        Volatile.Write(ref _busy, 1);
        Interlocked.Add(ref _writes, written);
        return error;
    }

    /// <summary>
    /// <see cref="DropCached"/> once no read or write came since the previous call (the background tick's): while the
    /// write path writes back at the limit and reads written-back pages, a synchronous flush of the file each tick and
    /// reads that then go to the disk took the soak's verified writer on such a device to 0.42x.
    /// </summary>
    public void DropCachedIfIdle()
    {
        if (Interlocked.Exchange(ref _busy, 0) == 0)
        {
            DropCached();
        }
    }

    /// <summary>
    /// Gives back the page cache the file's writes and reads left since the last call: the kernel's zram writes a slot
    /// back with a bio, so the page leaves RAM, where a write here leaves a whole dirty 4 KiB page (whatever the
    /// object's size) until the flusher writes it, charged to the daemon's memory cgroup. Writes what is dirty and
    /// waits for it, then drops the file's clean pages. Run after a writeback run, and by the background tick once
    /// the file is idle (<see cref="DropCachedIfIdle"/>).
    /// </summary>
    public void DropCached()
    {
        if (Volatile.Read(ref _cached) == 0 || Interlocked.Exchange(ref _cached, 0) == 0 || _disposed)
        {
            return;
        }

        // Every write waited for its own block (Write), so nothing here is dirty but for a write in flight, whose error
        // this must not take from it: under the same lock.
        lock (_writeLock)
        {
            Interop.Libc.SyncFileRange(_file, 0, 0, Interop.Libc.SyncFileRangeWaitBefore | Interop.Libc.SyncFileRangeWrite | Interop.Libc.SyncFileRangeWaitAfter);
            Interop.Libc.PosixFadvise(_file, 0, 0, Interop.Libc.PosixFadviseDontNeed);
        }
    }

    /// <summary>Reads an object back from its block; false if the file returned fewer bytes (it was cut short).</summary>
    /// <exception cref="IOException">The filesystem failed the read.</exception>
    public bool Read(long block, Span<byte> destination)
    {
        CheckBlock(block, destination.Length);
        Interlocked.Increment(ref _reads);
        int total = 0;
        while (total < destination.Length)
        {
            int n = RandomAccess.Read(_file, destination[total..], (block << BlockShift) + total);
            Volatile.Write(ref _cached, 1);
            Volatile.Write(ref _busy, 1);
            if (n <= 0)
            {
                return false;
            }

            total += n;
        }

        return true;
    }

    /// <summary>Gives a block back now: its space in the file first (punched out), then its bit. For a block no slot
    /// got (its write failed, the slot changed); a slot's goes by <see cref="FreeLater"/>.</summary>
    public void Free(long block)
    {
        CheckBlock(block, 0);
        Interlocked.Increment(ref _punches);
        if (Interop.Libc.Fallocate(_file, Interop.Libc.FallocFlPunchHole | Interop.Libc.FallocFlKeepSize, block << BlockShift, BlockSize) != 0)
        {
            Interlocked.Increment(ref _punchFailures);
        }

        ulong mask = 1UL << (int)(block & 63);
        ulong before = Interlocked.And(ref _used[block >> 6], ~mask);
        if ((before & mask) == 0)
        {
            throw new InvalidOperationException($"backing block {block} freed twice");
        }

        Interlocked.Decrement(ref _count);
    }

    /// <summary>Gives a slot's block back: marked now, punched out of the file and free for reuse at the next
    /// <see cref="PunchFreed"/>.</summary>
    public void FreeLater(long block)
    {
        CheckBlock(block, 0);
        ulong mask = 1UL << (int)(block & 63);
        if ((Volatile.Read(ref _used[block >> 6]) & mask) == 0 || (Interlocked.Or(ref _freed[block >> 6], mask) & mask) != 0)
        {
            throw new InvalidOperationException($"backing block {block} freed twice");
        }

        // In use when looked at, but a punch may have ended it since (its first free's) and taken its mark before ours:
        // looked at again after marking, it is free then.
        if ((Volatile.Read(ref _used[block >> 6]) & mask) == 0)
        {
            Interlocked.And(ref _freed[block >> 6], ~mask);
            throw new InvalidOperationException($"backing block {block} freed twice");
        }

        Interlocked.Increment(ref _freedCount);
    }

    /// <summary>Punches out what <see cref="FreeLater"/> gave back, a run of neighbouring blocks with one fallocate, and
    /// then frees their bits. Blocks given back meanwhile wait for the next call.</summary>
    public void PunchFreed()
    {
        if (FreedUnpunched == 0 || _disposed)
        {
            return;
        }

        lock (_punchLock)
        {
            long runStart = 0, runEnd = 0;
            for (int w = 0; w < _freed.Length; w++)
            {
                // Read, not taken: the bits stay set until their run is punched (PunchRun), so a second FreeLater of
                // one of them meanwhile still throws.
                ulong bits = Volatile.Read(ref _freed[w]);
                while (bits != 0)
                {
                    int bit = BitOperations.TrailingZeroCount(bits);
                    int length = BitOperations.TrailingZeroCount(~(bits >> bit)); // 64 when every bit from there is set
                    long start = ((long)w << 6) + bit;
                    if (start != runEnd)
                    {
                        PunchRun(runStart, runEnd);
                        runStart = start;
                    }

                    runEnd = start + length;
                    bits &= length == 64 ? 0 : ~(((1UL << length) - 1) << bit);
                }
            }

            PunchRun(runStart, runEnd);
        }
    }

    /// <summary>Punches blocks [start, end) out of the file, then clears their bits (in that order: see the header).</summary>
    private void PunchRun(long start, long end)
    {
        if (end == start)
        {
            return;
        }

        Interlocked.Increment(ref _punches);
        if (Interop.Libc.Fallocate(_file, Interop.Libc.FallocFlPunchHole | Interop.Libc.FallocFlKeepSize, start << BlockShift, (end - start) << BlockShift) != 0)
        {
            Interlocked.Add(ref _punchFailures, end - start);
        }

        // The bits in use first, then the marks: a second FreeLater finds one or the other at every moment and throws,
        // and Allocate passes over a block still marked.
        for (int pass = 0; pass < 2; pass++)
        {
            ulong[] bitmap = pass == 0 ? _used : _freed;
            for (long block = start; block < end;)
            {
                int bit = (int)(block & 63);
                int length = (int)Math.Min(64 - bit, end - block);
                ulong mask = length == 64 ? ulong.MaxValue : ((1UL << length) - 1) << bit;
                Interlocked.And(ref bitmap[block >> 6], ~mask);
                block += length;
            }
        }

        // The waiting count first: Count reads a moment high, never below what is in use.
        Interlocked.Add(ref _freedCount, start - end);
        Interlocked.Add(ref _count, start - end);
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _file.Dispose();
        try
        {
            // A file put there since (ours renamed or deleted under us) is someone else's.
            if (Configuration.FileIdentity.Of(FilePath) == _identity)
            {
                File.Delete(FilePath);
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    /// <summary>
    /// Opens (creating) and locks the file, cutting nothing. Not FileStream: FileMode.Create truncates, and its lock
    /// (flock, for FileShare.None) the runtime leaves out when DOTNET_SYSTEM_IO_DISABLEFILELOCKING is set, and then
    /// opens with O_TRUNC: a second zramd would empty a running one's file under it, and delete it at exit.
    /// </summary>
    /// <exception cref="BackingFileInUseException">Another open of the file holds its lock.</exception>
    private static SafeFileHandle OpenLocked(string path)
    {
        int fd = Interop.Libc.Open(path, Interop.Libc.ORdWr | Interop.Libc.OCreat | Interop.Libc.OCloexec | Interop.Libc.ONoctty, Interop.Libc.ModeOwnerReadWrite);
        if (fd < 0)
        {
            throw new IOException($"cannot open {path}: {Interop.Libc.Describe(Marshal.GetLastPInvokeError())}");
        }

        var file = new SafeFileHandle(fd, ownsHandle: true);
        if (Interop.Libc.Flock(file, Interop.Libc.LockExclusive | Interop.Libc.LockNonBlocking) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Interop.Libc.EWouldBlock)
            {
                file.Dispose();
                throw new BackingFileInUseException(path);
            }

            // A filesystem without flock (ENOLCK, EOPNOTSUPP) goes on unlocked, as FileStream did: refusing to start
            // there would be worse than what the lock guards against.
        }

        return file;
    }

    /// <summary>Throws unless the file opened may be emptied: a regular file (not a FIFO, a device, ...) of ours alone
    /// (owned by this user, no other name: a hard link keeps what it is given, another owner may read it), empty (new)
    /// or ending in <see cref="Trailer"/>.</summary>
    private static void CheckOurs(SafeFileHandle file, string path)
    {
        Span<byte> statx = stackalloc byte[Interop.Libc.StatxBufferSize];
        if (Interop.Libc.Statx(file, string.Empty, Interop.Libc.AtEmptyPath, Interop.Libc.StatxBasicStats, statx) != 0)
        {
            throw new IOException($"cannot stat {path}: {Interop.Libc.Describe(Marshal.GetLastPInvokeError())}");
        }

        CheckRegular(statx, path);
        uint owner = MemoryMarshal.Read<uint>(statx[Interop.Libc.StatxUidOffset..]);
        if (owner != Interop.Libc.GetEuid())
        {
            throw new IOException($"{path} exists and belongs to another user (uid {owner}), who could read the pages zramd would write there: remove it or name another");
        }

        if (MemoryMarshal.Read<uint>(statx[Interop.Libc.StatxNlinkOffset..]) != 1)
        {
            throw new IOException($"{path} exists under other names too (hard links), which would keep the pages zramd writes there after it deletes this one: remove them or name another");
        }

        long length = (long)MemoryMarshal.Read<ulong>(statx[Interop.Libc.StatxSizeOffset..]);
        if (length == 0)
        {
            return;
        }

        Span<byte> end = stackalloc byte[Trailer.Length];
        if (length < Trailer.Length || (length - Trailer.Length) % BlockSize != 0
            || RandomAccess.Read(file, end, length - Trailer.Length) != end.Length || !end.SequenceEqual(Trailer))
        {
            throw new IOException($"{path} exists ({length} bytes) and is not a zramd writeback file: zramd empties the file it writes back to, and deletes it at exit, so it takes only a new, empty or earlier zramd's one; remove it or name another");
        }
    }

    private static void CheckRegular(ReadOnlySpan<byte> statx, string path)
    {
        if ((MemoryMarshal.Read<ushort>(statx[Interop.Libc.StatxModeOffset..]) & Interop.Libc.FileTypeMask) != Interop.Libc.RegularFileType)
        {
            throw new IOException($"{path} is not a regular file (a device, a FIFO, ...): a writeback-file is a file zramd makes, and deletes at exit");
        }
    }

    private void CheckBlock(long block, int length)
    {
        if ((ulong)block >= (ulong)_blocks || (uint)length > BlockSize)
        {
            throw new ArgumentOutOfRangeException(nameof(block), block, $"block {block} (length {length}) is outside the {_blocks}-block backing file");
        }
    }

    /// <summary>A new 24-hour window starts when the last one is over. The budget lock is held.</summary>
    private void RollWindow()
    {
        long now = _clock();
        if (now - _windowStart >= 24 * 3600)
        {
            _windowStart = now;
            _windowBytes = 0;
        }
    }
}
