using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ZramDaemon.Native;

namespace ZramDaemon.Device.Dedup;

/// <summary>
/// Same-page deduplication's table: the pool objects stored while dedup is on are entries here (their handle, the
/// slot info describing it, the CRC32C of the page it holds, and how many slots refer to it). A slot that holds
/// a deduplicated page keeps the entry's id, not the handle. Entries with the same hash are chained from a bucket
/// array, so a write finds the candidates for its page in one probe; sharing still needs the bytes to compare equal
/// (the caller decompresses and compares under <see cref="Lock"/>). Freed ids are reused (a free list). An entry
/// only one slot refers to leaves the index when writeback or recompression takes that slot
/// (<see cref="TryTakeSole"/>): the slot then holds the object itself. So does a slot whose new page found the
/// index full at the memory limit (<see cref="GrowthBytes"/>).
///
/// Free ids are chained by the difference to the next one less one (<see cref="NextFree"/>), so that a run of free
/// ids in order is a run of zeros. Slots name entries by id, so the arrays cannot be cut past a live entry; instead
/// a compaction (<see cref="Shrink"/>) orders the free list lowest id first, lets the ids past the last live entry go,
/// gives back every page of the entry array that holds only free ids (it reads as zeros, which is what such a run
/// says), and fits the buckets to the live entries. New entries then take the lowest ids, so the live ones gather at
/// the start and the pages past them stay given back. A page given back is faulted in again by the entry written to it
/// (<see cref="Touch"/>), and counted again.
///
/// One lock guards it all: it is taken under a slot lock (a leaf for the device, like the pool's), and the pool's
/// read and free calls may be made under it, never the other way. Arrays grow by doubling, so requests do not
/// allocate except when the table grows; they are mappings of their own (<see cref="MappedArray{T}"/>), so that the
/// arrays a growth or a shrink replaces go back to the OS at once, as mem_used_total (which counts them) says.
///
/// A reader of a slot takes its entry's handle under the lock and reads the object after letting go of it
/// (<see cref="BeginRead"/>, <see cref="EndRead"/>), so that reads of different slots do not queue on one lock. The
/// pool's handle shrink moves entries' handles (<see cref="MoveHandles"/>) under the lock once no such read is in
/// flight: none can start meanwhile, and a read in flight holds no lock the mover waits for.
/// </summary>
internal sealed class DedupIndex : IDisposable
{
    private const int None = -1;
    private const int InitialEntries = 1024;

    private MappedArray<Entry> _entries = new(InitialEntries);
    private MappedArray<int> _buckets = NewBuckets(InitialEntries);
    private int _used;
    private int _freeHead = None;
    private int _live;
    private long _references;
    private long _bytes;
    private long _huge;
    private long _saved;
    private long _metadataBytes = ArraysBytes(InitialEntries);
    private int _reading;

    // Entries removed since the last Shrink, which runs only once a quarter of the ids in use went free since.
    private int _removedSinceShrink;

    public Lock Lock { get; } = new();

    /// <summary>Entries (distinct stored objects).</summary>
    public int Count => Volatile.Read(ref _live);

    /// <summary>Slots referring to an entry; minus <see cref="Count"/>, the pages deduplication saved.</summary>
    public long References => Interlocked.Read(ref _references);

    /// <summary>Payload bytes of the entries' objects (each counted once).</summary>
    public long Bytes => Interlocked.Read(ref _bytes);

    /// <summary>Entries holding a raw (huge) page.</summary>
    public long HugeEntries => Interlocked.Read(ref _huge);

    /// <summary>Payload bytes not stored because a slot shared an entry instead of storing its own object.</summary>
    public long BytesSaved => Interlocked.Read(ref _saved);

    /// <summary>What an empty table takes (<see cref="MetadataBytes"/> at creation).</summary>
    public static long InitialMetadataBytes => ArraysBytes(InitialEntries);

    /// <summary>What the table takes: its entry and bucket arrays, less the pages of entries given back (read without
    /// the lock: it is on the write path).</summary>
    public long MetadataBytes => Interlocked.Read(ref _metadataBytes);

    /// <summary>About what a <see cref="Shrink"/> now would give back: the arrays of an index with no entry, or the free
    /// entries once Shrink would run (it gives back only the pages they fill whole). Without the lock: an estimate,
    /// for the background tick's choice to compact.</summary>
    public long ShrinkableBytes
    {
        get
        {
            int used = Volatile.Read(ref _used);
            int live = Volatile.Read(ref _live);
            return live == 0 ? MetadataBytes - InitialMetadataBytes
                : ShrinkDue(Volatile.Read(ref _removedSinceShrink), used) ? (long)(used - live) * Unsafe.SizeOf<Entry>() : 0;
        }
    }

    /// <summary>CRC32C of a page, with the CPU's crc32 instruction where there is one.</summary>
    public static uint Hash(ReadOnlySpan<byte> page)
    {
        ReadOnlySpan<ulong> words = MemoryMarshal.Cast<byte, ulong>(page);
        // Three independent chains: crc32 has a latency of three cycles and a throughput of one.
        uint a = 0, b = 0x9E3779B9, c = 0x7F4A7C15;
        int third = words.Length / 3;
        for (int i = 0; i < third; i++)
        {
            a = BitOperations.Crc32C(a, words[i]);
            b = BitOperations.Crc32C(b, words[third + i]);
            c = BitOperations.Crc32C(c, words[(2 * third) + i]);
        }

        for (int i = 3 * third; i < words.Length; i++)
        {
            c = BitOperations.Crc32C(c, words[i]);
        }

        return BitOperations.Crc32C(BitOperations.Crc32C(a, b), c);
    }

    /// <summary>The first entry with <paramref name="hash"/>, or -1. <see cref="Lock"/> is held.</summary>
    public int First(uint hash)
    {
        int id = Bucket(hash);
        while (id != None && _entries[id].Hash != hash)
        {
            id = _entries[id].Next;
        }

        return id;
    }

    /// <summary>The next entry after <paramref name="id"/> with the same hash, or -1. <see cref="Lock"/> is held.</summary>
    public int Next(int id)
    {
        uint hash = _entries[id].Hash;
        id = _entries[id].Next;
        while (id != None && _entries[id].Hash != hash)
        {
            id = _entries[id].Next;
        }

        return id;
    }

    /// <summary>The entry's object: its pool handle and the slot info that describes it. <see cref="Lock"/> is held.</summary>
    public (uint Handle, uint Info) Get(int id) => (_entries[id].Handle, _entries[id].Info);

    /// <summary>The entry's object for a read made after the lock is let go, which must end with <see cref="EndRead"/>:
    /// until then its handle does not move. <see cref="Lock"/> is held.</summary>
    public (uint Handle, uint Info) BeginRead(int id)
    {
        Interlocked.Increment(ref _reading);
        return (_entries[id].Handle, _entries[id].Info);
    }

    /// <summary>A read <see cref="BeginRead"/> began is over. Without the lock.</summary>
    public void EndRead() => Interlocked.Decrement(ref _reading);

    /// <summary>
    /// For the pool's handle shrink: every live entry whose handle <paramref name="above"/> says lies past the mark gets
    /// the one <paramref name="move"/> returns for it. Takes <see cref="Lock"/>, then waits for the reads in flight
    /// (microseconds each: a page's decompression) to end, so that no reader holds a handle it moves.
    /// </summary>
    public void MoveHandles(Func<uint, bool> above, Func<uint, uint> move)
    {
        lock (Lock)
        {
            var spin = default(SpinWait);
            while (Volatile.Read(ref _reading) != 0)
            {
                spin.SpinOnce();
            }

            for (int id = 0; id < _used; id++)
            {
                if (_entries.IsReleased(id))
                {
                    continue;
                }

                ref Entry entry = ref _entries[id];
                if (entry.References > 0 && above(entry.Handle))
                {
                    entry.Handle = move(entry.Handle);
                }
            }
        }
    }

    /// <summary>One more slot refers to the entry. <see cref="Lock"/> is held.</summary>
    public void AddReference(int id)
    {
        _entries[id].References++;
        Interlocked.Increment(ref _references);
        Interlocked.Add(ref _saved, SlotInfo.Size(_entries[id].Info));
    }

    /// <summary>
    /// What the next <see cref="Add"/> adds to <see cref="MetadataBytes"/>: 0 while a free id or room is left, else
    /// the cost of doubling the arrays, or the buckets alone after a shrink fitted them to fewer entries (a write at
    /// the memory limit stores its page outside the index rather than take the table past the limit), plus the pages
    /// of entries a shrink gave back that the new entry's id lies in (its write faults them in again, <see cref="Touch"/>).
    /// <see cref="Lock"/> is held.
    /// </summary>
    public long GrowthBytes
    {
        get
        {
            if (_freeHead == None && _used == _entries.Length)
            {
                return MetadataBytes;
            }

            int next = _freeHead != None ? _freeHead : _used;
            return (_live >= _buckets.Length ? _buckets.Bytes : 0) + _entries.ReleasedBytesOf(next);
        }
    }

    /// <summary>A new entry with one reference, for an object just stored. Takes <see cref="Lock"/>.</summary>
    public int Add(uint hash, uint handle, uint info)
    {
        lock (Lock)
        {
            int id = _freeHead;
            if (id != None)
            {
                _freeHead = NextFree(id);
            }
            else
            {
                if (_used == _entries.Length)
                {
                    Grow();
                }

                id = _used++;
            }

            if (_live >= _buckets.Length)
            {
                // Only after a shrink fitted the buckets to fewer entries: Grow keeps one a slot.
                Rehash(_buckets.Length * 2);
            }

            Touch(id);
            ref int head = ref Bucket(hash);
            _entries[id] = new Entry { Handle = handle, Info = info, Hash = hash, References = 1, Next = head };
            head = id;
            _live++;
            Interlocked.Increment(ref _references);
            Interlocked.Add(ref _bytes, SlotInfo.Size(info));
            if ((info & SlotInfo.Huge) != 0)
            {
                Interlocked.Increment(ref _huge);
            }

            return id;
        }
    }

    /// <summary>
    /// One slot no longer refers to the entry. Returns true, with the handle to free, when it was the last: the entry
    /// is gone and the caller frees the object (<paramref name="info"/> describes it). Takes <see cref="Lock"/>.
    /// </summary>
    public bool Release(int id, out uint handle, out uint info)
    {
        lock (Lock)
        {
            ref Entry entry = ref _entries[id];
            if (entry.References <= 0)
            {
                throw new InvalidOperationException($"dedup entry {id} released more often than referred to");
            }

            Interlocked.Decrement(ref _references);
            handle = entry.Handle;
            info = entry.Info;
            if (--entry.References > 0)
            {
                Interlocked.Add(ref _saved, -SlotInfo.Size(entry.Info));
                return false;
            }

            Remove(id);
            return true;
        }
    }

    /// <summary>Whether exactly one slot refers to the entry, and what its object is (<paramref name="info"/>). Takes
    /// <see cref="Lock"/>; the caller holds that slot's lock, but another writer may share the entry right after.</summary>
    public bool IsSole(int id, out uint info)
    {
        lock (Lock)
        {
            info = _entries[id].Info;
            return _entries[id].References == 1;
        }
    }

    /// <summary>
    /// Takes the entry out of the index if exactly one slot refers to it, handing that slot its object: the slot
    /// holds <paramref name="handle"/> (described by <paramref name="info"/>) itself from then on, as without dedup.
    /// False, and nothing changes, when others share it. Takes <see cref="Lock"/>.
    /// </summary>
    public bool TryTakeSole(int id, out uint handle, out uint info)
    {
        lock (Lock)
        {
            handle = _entries[id].Handle;
            info = _entries[id].Info;
            if (_entries[id].References != 1)
            {
                return false;
            }

            Interlocked.Decrement(ref _references);
            Remove(id);
            return true;
        }
    }

    /// <summary>Unchains an entry whose last reference went and frees its id. <see cref="Lock"/> is held.</summary>
    private void Remove(int id)
    {
        ref Entry entry = ref _entries[id];
        Unlink(id, entry.Hash);
        Interlocked.Add(ref _bytes, -SlotInfo.Size(entry.Info));
        if ((entry.Info & SlotInfo.Huge) != 0)
        {
            Interlocked.Decrement(ref _huge);
        }

        entry = new Entry { Next = FreeLink(id, _freeHead), References = 0 };
        _freeHead = id;
        _live--;
        _removedSinceShrink++;
    }

    /// <summary>The free id after <paramref name="id"/> in the free list, or -1. <see cref="Lock"/> is held.</summary>
    private int NextFree(int id) => id + 1 + _entries[id].Next;

    /// <summary>What a free entry's Next holds to chain <paramref name="id"/> to <paramref name="next"/> (-1: the end):
    /// 0 for the id just after it, so that a page of free ids in order is a page of zeros.</summary>
    private static int FreeLink(int id, int next) => next - id - 1;

    /// <summary>Entry <paramref name="id"/> is about to be written: the pages it lies in that were given back count
    /// again (the write faults them in). <see cref="Lock"/> is held.</summary>
    private void Touch(int id)
    {
        if (_entries.Reclaim(id) > 0)
        {
            UpdateMetadataBytes();
        }
    }

    private void UpdateMetadataBytes() =>
        Interlocked.Exchange(ref _metadataBytes, _entries.ResidentBytes + _buckets.Bytes);

    private static bool ShrinkDue(int removedSinceShrink, int used) => removedSinceShrink >= Math.Max(1, used / 4);

    private void Unlink(int id, uint hash)
    {
        ref int link = ref Bucket(hash);
        while (link != id)
        {
            link = ref _entries[link].Next;
        }

        link = _entries[id].Next;
    }

    /// <summary>
    /// For a compaction: back to the first size once no entry is live (a reset, a discard of the whole device), the
    /// arrays grown for the data that was there going with them. With live entries, once a quarter of the ids in use
    /// went free since the last time: the free list in id order, the ids past the last live entry let go, every page
    /// of entries that holds only free ids given back, and the buckets fitted to the live entries (see the class).
    /// </summary>
    public void Shrink()
    {
        lock (Lock)
        {
            if (_live == 0)
            {
                if (_entries.Length != InitialEntries || _entries.ReleasedPages != 0)
                {
                    _entries.Dispose();
                    _buckets.Dispose();
                    _entries = new MappedArray<Entry>(InitialEntries);
                    _buckets = NewBuckets(InitialEntries);
                }

                _used = 0;
                _freeHead = None;
                _removedSinceShrink = 0;
                UpdateMetadataBytes();
                return;
            }

            if (!ShrinkDue(_removedSinceShrink, _used))
            {
                return;
            }

            _removedSinceShrink = 0;
            int top = _used;
            while (_entries.IsReleased(top - 1) || _entries[top - 1].References == 0)
            {
                top--; // a live entry stops it
            }

            // Past the last live entry: no free ids any more but never used ones, which an Add writes whole; their
            // pages past the live entry's go back below unread.
            _used = top;
            int head = None, last = None;
            for (int id = 0; id < top; id++)
            {
                if (_entries.IsReleased(id) || _entries[id].References == 0)
                {
                    if (last == None)
                    {
                        head = id;
                    }
                    else
                    {
                        LinkFree(last, id);
                    }

                    last = id;
                }
            }

            if (last != None)
            {
                LinkFree(last, None);
            }

            _freeHead = head;
            ReleaseZeroPages(top);
            int buckets = Math.Max(InitialEntries, (int)BitOperations.RoundUpToPowerOf2((uint)_live) * 2);
            if (buckets < _buckets.Length)
            {
                Rehash(buckets);
            }

            UpdateMetadataBytes();
        }
    }

    /// <summary>Chains free <paramref name="id"/> to <paramref name="next"/>, writing only what changes (a page given
    /// back stays so where the link is 0). <see cref="Lock"/> is held.</summary>
    private void LinkFree(int id, int next)
    {
        int link = FreeLink(id, next);
        if ((_entries.IsReleased(id) ? 0 : _entries[id].Next) != link)
        {
            Touch(id);
            _entries[id].Next = link;
        }
    }

    /// <summary>Gives back the entry array's pages not given back yet: up to the page of id <paramref name="top"/> - 1
    /// (live), those that hold only zeros (free ids chained in order); past it all (no id there is in use). Runs of them
    /// in one call. <see cref="Lock"/> is held.</summary>
    private void ReleaseZeroPages(int top)
    {
        int lastInUse = MappedArray<Entry>.PagesOf(top - 1).Last;
        int run = 0;
        for (int page = 0; page <= _entries.Pages; page++)
        {
            if (page < _entries.Pages && !_entries.IsPageReleased(page) && (page > lastInUse || _entries.IsPageZero(page)))
            {
                run++;
                continue;
            }

            if (run > 0)
            {
                _entries.ReleasePages(page - run, run);
                run = 0;
            }
        }
    }

    /// <summary>Unmaps the arrays (the device is being disposed: nothing uses the index any more).</summary>
    public void Dispose()
    {
        lock (Lock)
        {
            _entries.Dispose();
            _buckets.Dispose();
        }
    }

    private static long ArraysBytes(int entries) => MappedArray<Entry>.BytesFor(entries) + MappedArray<int>.BytesFor(entries);

    /// <summary>Twice the entries and buckets; every live entry is chained again. Only with no free id: every id in
    /// use is live, so no page of those copied was given back. <see cref="Lock"/> is held.</summary>
    private void Grow()
    {
        var entries = new MappedArray<Entry>(_entries.Length * 2);
        _entries.AsSpan()[.._used].CopyTo(entries.AsSpan());
        _entries.Dispose();
        _entries = entries;
        Rehash(_entries.Length);
    }

    /// <summary>New buckets, <paramref name="count"/> of them, with every live entry chained again (free ids keep
    /// their own chain through Next, untouched). <see cref="Lock"/> is held.</summary>
    private void Rehash(int count)
    {
        _buckets.Dispose();
        _buckets = NewBuckets(count);
        for (int id = 0; id < _used; id++)
        {
            if (!_entries.IsReleased(id) && _entries[id].References > 0)
            {
                ref int head = ref Bucket(_entries[id].Hash);
                _entries[id].Next = head;
                head = id;
            }
        }

        UpdateMetadataBytes();
    }

    /// <summary>The head of <paramref name="hash"/>'s chain. <see cref="Lock"/> is held.</summary>
    private ref int Bucket(uint hash) => ref _buckets[(int)(hash & (uint)(_buckets.Length - 1))];

    private static MappedArray<int> NewBuckets(int count)
    {
        var buckets = new MappedArray<int>(count);
        buckets.AsSpan().Fill(None);
        return buckets;
    }

    private struct Entry
    {
        public uint Handle;
        public uint Info;
        public uint Hash;
        public int References;
        public int Next;
    }
}
