using Nbd.Devices;
using Nbd.Native;
using Nbd.Protocol;

namespace Nbd.Sessions;

/// <summary>
/// The request one serving thread of a connection has in hand (see <see cref="NbdSession"/>); each thread owns
/// one and reuses it, so a request costs no allocation. Its data buffer (<see cref="MappedBuffer"/>) is the
/// thread's own, with room for the reply header right before the data, and is unmapped when the thread leaves.
/// </summary>
internal sealed class RequestSlot
{
    /// <summary>Bytes kept free before the data so that a reply header can be written in front of it and the
    /// header and data sent in one call.</summary>
    public const int HeaderRoom = 32;

    /// <summary>Extents kept per slot: BLOCK_STATUS answers with at most this many descriptors, and a structured
    /// read is split into at most this many data/hole chunks.</summary>
    public const int ExtentCapacity = 64;

    private BlockExtent[]? _extents;

    public RequestHeader Request;
    public NbdError Error;
    public byte[]? ErrorMessage;

    /// <summary>READ and WRITE data, which starts at <see cref="HeaderRoom"/>.</summary>
    public readonly MappedBuffer Buffer = new();

    /// <summary>For BLOCK_STATUS and structured reads: the extents in <see cref="Extents"/>.</summary>
    public int ExtentCount;

    public BlockExtent[] Extents => _extents ??= new BlockExtent[ExtentCapacity];

    /// <summary>Whether the thread that owns this slot last set itself to SCHED_BATCH.</summary>
    public bool BatchScheduled;

    public Span<byte> Data => Buffer.Span(HeaderRoom, (int)Request.Length);

    /// <summary>Grows the buffer for the current request's data and its reply header.</summary>
    public void EnsureBuffer() => Buffer.Ensure(HeaderRoom + (int)Request.Length);
}
