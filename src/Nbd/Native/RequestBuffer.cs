using System.Runtime.InteropServices;

namespace Nbd.Native;

/// <summary>
/// The data buffer of one serving thread (<see cref="Sessions.RequestSlot"/>): an anonymous mapping, grown to the
/// largest request the thread has carried (past 4 MiB, unmapped again once that request is answered: see
/// NbdSession.RetainedBufferBytes) and unmapped when its connection ends, so that a closed connection leaves
/// no memory behind. Arrays rented from the shared pool did not: each thread's cached arrays stayed in the managed
/// heap after the thread had exited (until a full GC, which an idle daemon does not run), and the next connection's
/// threads rented new ones (measured: the daemon's RSS stayed 7-9 MiB higher after two nbdcopy runs of 4 connections).
/// Only pages a request touches become resident. The one file of unsafe code in Nbd: every span it hands out lies
/// within the mapping (<see cref="Span"/> checks), and the mapping is unmapped only by its owner thread, after its
/// last request.
/// </summary>
internal sealed unsafe class RequestBuffer : IDisposable
{
    /// <summary>Mappings grow in steps of this much: a 256 KiB request and its reply header take 320 KiB.</summary>
    private const int Granule = 64 * 1024;

    private nint _address;
    private int _capacity;

    /// <summary>Bytes mapped now (0 before the first request and after <see cref="Dispose"/>).</summary>
    public int Capacity => _capacity;

    /// <summary>Makes room for <paramref name="length"/> bytes; what the buffer held is not kept when it grows.</summary>
    public void Ensure(int length)
    {
        if (length <= _capacity)
        {
            return;
        }

        ArgumentOutOfRangeException.ThrowIfNegative(length);
        Dispose();
        long size = ((long)length + Granule - 1) / Granule * Granule;
        nint address = Libc.Mmap(0, (nuint)size, Libc.ProtRead | Libc.ProtWrite, Libc.MapPrivate | Libc.MapAnonymous | Libc.MapNoReserve, -1, 0);
        if (address == Libc.MapFailed)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new OutOfMemoryException($"mmap of a {size}-byte request buffer failed: errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)}).");
        }

        _address = address;
        _capacity = (int)size;
    }

    /// <summary>Bytes [start, start + length) of the buffer; throws unless they lie within what is mapped.</summary>
    public Span<byte> Span(int start, int length)
    {
        if ((uint)start > (uint)_capacity || (uint)length > (uint)(_capacity - start))
        {
            throw new ArgumentOutOfRangeException(nameof(length), $"[{start}, {start}+{length}) is outside the {_capacity}-byte request buffer.");
        }

        // In bounds: checked against the mapping's size just above.
        return new Span<byte>((byte*)_address + start, length);
    }

    /// <summary>Unmaps the buffer (its pages leave the process at once). It can be grown again after.</summary>
    public void Dispose()
    {
        if (_address == 0)
        {
            return;
        }

        if (Libc.Munmap(_address, (nuint)_capacity) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new InvalidOperationException($"munmap of a {_capacity}-byte request buffer failed: errno {errno}.");
        }

        _address = 0;
        _capacity = 0;
    }
}
