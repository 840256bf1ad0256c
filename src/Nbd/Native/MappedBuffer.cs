using System.Buffers;
using System.Runtime.InteropServices;

namespace Nbd.Native;

/// <summary>
/// A buffer of a connection that is an anonymous mapping, not a managed array, so that it leaves the process the
/// moment it is unmapped: each serving thread's data buffer (<see cref="Sessions.RequestSlot"/>: grown to the largest
/// request the thread has carried, past 4 MiB unmapped again once that request is answered, see
/// NbdSession.RetainedBufferBytes) and the connection's receive, send and reply-queue buffers (NbdSession), all
/// unmapped when the connection ends. Managed buffers did not leave: arrays rented from the shared pool stayed cached
/// per thread after the thread had exited, and arrays a connection allocated stayed in the heap until a full GC, which
/// a process that allocates nothing does not run by itself (measured: RSS 7-9 MiB higher after two nbdcopy runs of 4
/// connections; 70 MiB higher after 200 connections at once, each with 384 KiB of arrays). Only pages that are touched
/// become resident.
/// The one file of unsafe code in Nbd: every span it hands out lies within the mapping (<see cref="Span"/> checks),
/// and the mapping is unmapped only by its owner, once no thread uses it. A MemoryManager, so that the handshake's
/// asynchronous stream calls can take it as Memory (valid until the next <see cref="Ensure"/> or <see cref="Unmap"/>).
/// Unmap does not wait for pins: the buffer must only reach calls that are done with it when they return (the blocking
/// socket stream's, SslStream's over it), never an asynchronous socket operation that could outlive the mapping.
/// </summary>
internal sealed unsafe class MappedBuffer : MemoryManager<byte>
{
    /// <summary>Mappings grow in steps of this much: a 256 KiB request and its reply header take 320 KiB.</summary>
    private const int Granule = 64 * 1024;

    private static long _mappedCount;

    private nint _address;
    private int _capacity;

    /// <summary>Buffers of the process mapped now, for tests: a connection that ends must leave none behind.</summary>
    internal static long MappedCount => Interlocked.Read(ref _mappedCount);

    /// <summary>Bytes mapped now (0 before the first <see cref="Ensure"/> and after <see cref="Unmap"/>).</summary>
    public int Capacity => _capacity;

    /// <summary>Makes room for <paramref name="length"/> bytes; what the buffer held is not kept when it grows.</summary>
    public void Ensure(int length)
    {
        if (length <= _capacity)
        {
            return;
        }

        ArgumentOutOfRangeException.ThrowIfNegative(length);
        Unmap();
        long size = ((long)length + Granule - 1) / Granule * Granule;
        nint address = Libc.Mmap(0, (nuint)size, Libc.ProtRead | Libc.ProtWrite, Libc.MapPrivate | Libc.MapAnonymous | Libc.MapNoReserve, -1, 0);
        if (address == Libc.MapFailed)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new OutOfMemoryException($"mmap of a {size}-byte buffer failed: errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)}).");
        }

        _address = address;
        _capacity = (int)size;
        Interlocked.Increment(ref _mappedCount);
    }

    /// <summary>Bytes [start, start + length) of the buffer; throws unless they lie within what is mapped.</summary>
    public Span<byte> Span(int start, int length)
    {
        if ((uint)start > (uint)_capacity || (uint)length > (uint)(_capacity - start))
        {
            throw new ArgumentOutOfRangeException(nameof(length), $"[{start}, {start}+{length}) is outside the {_capacity}-byte buffer.");
        }

        // In bounds: checked against the mapping's size just above.
        return new Span<byte>((byte*)_address + start, length);
    }

    /// <summary>The whole mapping.</summary>
    public override Span<byte> GetSpan() => Span(0, _capacity);

    /// <summary>The mapping never moves: pinning is only a pointer (see the summary on what may pin it).</summary>
    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ObjectDisposedException.ThrowIf(_address == 0, this);
        if ((uint)elementIndex > (uint)_capacity)
        {
            throw new ArgumentOutOfRangeException(nameof(elementIndex), $"{elementIndex} is outside the {_capacity}-byte buffer.");
        }

        // In bounds: checked against the mapping's size just above (the end itself is allowed, as for an array).
        return new MemoryHandle((byte*)_address + elementIndex);
    }

    public override void Unpin()
    {
    }

    /// <summary>Unmaps the buffer (its pages leave the process at once). It can be grown again after.</summary>
    public void Unmap()
    {
        if (_address == 0)
        {
            return;
        }

        if (Libc.Munmap(_address, (nuint)_capacity) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new InvalidOperationException($"munmap of a {_capacity}-byte buffer failed: errno {errno}.");
        }

        _address = 0;
        _capacity = 0;
        Interlocked.Decrement(ref _mappedCount);
    }

    protected override void Dispose(bool disposing) => Unmap();
}
