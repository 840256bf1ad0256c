using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ZramDaemon.Native;

/// <summary>
/// A fixed-length array of <typeparamref name="T"/> in an anonymous mapping of its own, zeroed, for a table that grows
/// and shrinks with the data (the dedup index): disposing it unmaps it, so its memory goes back to the OS at once. A
/// managed array replaced by a larger or smaller one stays on the GC heap until a full collection, which a daemon that
/// allocates nothing per request seldom has, and its pages stay resident after that too (RetainVM). Every index is
/// checked. Not thread-safe: the owner's lock guards it, and no reference into it may outlive <see cref="Dispose"/>.
/// </summary>
internal sealed unsafe class MappedArray<T> : IDisposable
    where T : unmanaged
{
    private T* _items;

    /// <exception cref="OutOfMemoryException">mmap failed.</exception>
    public MappedArray(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        Length = length;
        Bytes = BytesFor(length);
        nint address = Interop.Libc.Mmap(0, (nuint)Bytes, Interop.Libc.ProtRead | Interop.Libc.ProtWrite,
            Interop.Libc.MapPrivate | Interop.Libc.MapAnonymous, -1, 0);
        if (address == Interop.Libc.MapFailed)
        {
            throw new OutOfMemoryException($"mmap of {Bytes} bytes failed: {Marshal.GetLastPInvokeErrorMessage()}");
        }

        _items = (T*)address;
    }

    ~MappedArray() => Unmap();

    public int Length { get; }

    /// <summary>What the mapping takes: whole pages.</summary>
    public long Bytes { get; }

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

    /// <summary>What an array of <paramref name="length"/> elements maps.</summary>
    public static long BytesFor(int length)
    {
        long bytes = (long)length * sizeof(T);
        return (bytes + Environment.SystemPageSize - 1) & ~((long)Environment.SystemPageSize - 1);
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
            Interop.Libc.Munmap((nint)_items, (nuint)Bytes);
            _items = null;
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
