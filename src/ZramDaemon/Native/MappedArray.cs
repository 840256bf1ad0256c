using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using ZsAlloc.Native;

namespace ZramDaemon.Native;

/// <summary>
/// A fixed-length array of <typeparamref name="T"/> in an anonymous mapping of its own, zeroed, for a table that grows
/// and shrinks with the data (the dedup index): disposing it unmaps it, so its memory goes back to the OS at once, and
/// its pages that hold only zeros can go back while it lives (<see cref="ReleasePages"/>). A managed array replaced by
/// a larger or smaller one stays on the GC heap until a full collection, which a daemon that allocates nothing per
/// request seldom has, and its pages stay resident after that too (RetainVM). Every index is checked. Not
/// thread-safe: the owner's lock guards it, and no reference into it may outlive <see cref="Dispose"/>. The mapping
/// and the release are the pool's (<see cref="MemoryMap"/>), which also release pages under mlockall.
/// </summary>
internal sealed unsafe class MappedArray<T> : IDisposable
    where T : unmanaged
{
    private T* _items;

    // The pages given back (a bit each; null until one is): a read of one faults it in again where memory is locked,
    // so the owner asks here rather than reads.
    private ulong[]? _released;

    /// <exception cref="OutOfMemoryException">mmap failed.</exception>
    public MappedArray(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        Length = length;
        Bytes = BytesFor(length);
        _items = (T*)MemoryMap.Map(Bytes);
    }

    ~MappedArray() => Unmap();

    public int Length { get; }

    /// <summary>What the mapping takes: whole pages.</summary>
    public long Bytes { get; }

    /// <summary>The mapping's pages.</summary>
    public int Pages => (int)(Bytes / MemoryMap.PageSize);

    /// <summary>Pages given back (<see cref="ReleasePages"/>) and not taken back since (<see cref="Reclaim"/>).</summary>
    public int ReleasedPages { get; private set; }

    /// <summary>What the mapping holds resident, at most: <see cref="Bytes"/> less the pages given back.</summary>
    public long ResidentBytes => Bytes - ((long)ReleasedPages * MemoryMap.PageSize);

    /// <summary>The element at <paramref name="index"/>; throws outside 0..Length-1 or after <see cref="Dispose"/>.</summary>
    public ref T this[int index]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            if ((uint)index >= (uint)Length || _items == null)
            {
                ThrowOutOfRange(index);
            }

            // In bounds: index < Length, and the mapping holds Length elements until Dispose.
            return ref _items[index];
        }
    }

    /// <summary>The whole array.</summary>
    public Span<T> AsSpan()
    {
        ObjectDisposedException.ThrowIf(_items == null, this);
        return new Span<T>(_items, Length);
    }

    /// <summary>The first and last page that element <paramref name="index"/>'s bytes lie in.</summary>
    public static (int First, int Last) PagesOf(int index)
    {
        long start = (long)index * sizeof(T);
        return ((int)(start / MemoryMap.PageSize), (int)((start + sizeof(T) - 1) / MemoryMap.PageSize));
    }

    /// <summary>Whether every byte of page <paramref name="page"/> is zero; a page given back is, unread. It reads any
    /// other: one never written is faulted in as a page of its own where memory is locked (mlockall), not mapped to the
    /// kernel's zero page, so the owner asks only of pages it has written.</summary>
    public bool IsPageZero(int page)
    {
        CheckPages(page, 1);
        return IsPageReleased(page)
            || new ReadOnlySpan<byte>((byte*)_items + ((long)page * MemoryMap.PageSize), MemoryMap.PageSize).IndexOfAnyExcept((byte)0) < 0;
    }

    /// <summary>Whether page <paramref name="page"/> was given back and not taken back since.</summary>
    public bool IsPageReleased(int page) => _released is { } released && (released[page >> 6] & (1UL << (page & 63))) != 0;

    /// <summary>Whether element <paramref name="index"/> lies in a page given back, so reads as zeros: known without
    /// reading it, which with memory locked would fault the page in again.</summary>
    public bool IsReleased(int index)
    {
        if (_released is null)
        {
            return false;
        }

        (int first, int last) = PagesOf(index);
        return IsPageReleased(first) || IsPageReleased(last);
    }

    /// <summary>What writing element <paramref name="index"/> would make resident again: the bytes of the pages it
    /// lies in that were given back (what <see cref="Reclaim"/> will count).</summary>
    public long ReleasedBytesOf(int index)
    {
        if (_released is null)
        {
            return 0;
        }

        (int first, int last) = PagesOf(index);
        return ((IsPageReleased(first) ? 1L : 0) + (last != first && IsPageReleased(last) ? 1 : 0)) * MemoryMap.PageSize;
    }

    /// <summary>Gives pages <paramref name="first"/>..+<paramref name="count"/> back to the OS; they read as zeros
    /// after, and a write (or, with memory locked, a read) faults a page in again. For pages whose elements the owner
    /// no longer needs; ones given back already are left as they are.</summary>
    public void ReleasePages(int first, int count)
    {
        CheckPages(first, count);
        MemoryMap.Release((nint)_items + ((nint)first * MemoryMap.PageSize), (long)count * MemoryMap.PageSize);
        _released ??= new ulong[(Pages + 63) / 64];
        for (int page = first; page < first + count; page++)
        {
            ref ulong word = ref _released[page >> 6];
            ulong bit = 1UL << (page & 63);
            if ((word & bit) == 0)
            {
                word |= bit;
                ReleasedPages++;
            }
        }
    }

    /// <summary>Element <paramref name="index"/> is about to be written: the pages it lies in that were given back are
    /// counted resident again (the write faults them in). Returns how many were.</summary>
    public int Reclaim(int index)
    {
        if (_released is null)
        {
            return 0;
        }

        int reclaimed = 0;
        (int first, int last) = PagesOf(index);
        for (int page = first; page <= last; page++)
        {
            ref ulong word = ref _released[page >> 6];
            ulong bit = 1UL << (page & 63);
            if ((word & bit) != 0)
            {
                word &= ~bit;
                ReleasedPages--;
                reclaimed++;
            }
        }

        return reclaimed;
    }

    /// <summary>What an array of <paramref name="length"/> elements maps.</summary>
    public static long BytesFor(int length)
    {
        long bytes = (long)length * sizeof(T);
        return (bytes + MemoryMap.PageSize - 1) & ~((long)MemoryMap.PageSize - 1);
    }

    public void Dispose()
    {
        Unmap();
        GC.SuppressFinalize(this);
    }

    private void Unmap()
    {
        if (_items != null)
        {
            MemoryMap.Unmap((nint)_items, Bytes);
            _items = null;
        }
    }

    private void CheckPages(int first, int count)
    {
        ObjectDisposedException.ThrowIf(_items == null, this);
        if (first < 0 || count <= 0 || first > Pages - count)
        {
            throw new ArgumentOutOfRangeException(nameof(first), $"pages {first}..+{count} are not in the array's {Pages}");
        }
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowOutOfRange(int index)
    {
        ObjectDisposedException.ThrowIf(_items == null, this);
        throw new ArgumentOutOfRangeException(nameof(index), index, $"outside the array's {Length} elements");
    }
}
