using Nbd.Devices;
using Nbd.Protocol;

namespace Nbd.Sessions;

/// <summary>
/// One in-flight request of a connection. A connection owns a fixed set of these (its in-flight limit) and
/// reuses them, so a request costs no allocation: the slot is the thread-pool work item, and its data buffer
/// is rented from the shared pool with room for the reply header right before the data.
/// </summary>
internal sealed class RequestSlot : IThreadPoolWorkItem
{
    /// <summary>Bytes kept free before the data so that a reply header can be written in front of it and the
    /// header and data sent in one call.</summary>
    public const int HeaderRoom = 32;

    /// <summary>Extents kept per slot: BLOCK_STATUS answers with at most this many descriptors, and a structured
    /// read is split into at most this many data/hole chunks.</summary>
    public const int ExtentCapacity = 64;

    private readonly NbdSession _session;
    private BlockExtent[]? _extents;

    public RequestSlot(NbdSession session) => _session = session;

    public RequestHeader Request;
    public NbdError Error;
    public byte[]? ErrorMessage;

    /// <summary>Rented buffer for READ and WRITE data, which starts at <see cref="HeaderRoom"/>.</summary>
    public byte[]? Buffer;

    /// <summary>For BLOCK_STATUS and structured reads: the extents in <see cref="Extents"/>.</summary>
    public int ExtentCount;

    public BlockExtent[] Extents => _extents ??= new BlockExtent[ExtentCapacity];

    public Span<byte> Data => Buffer.AsSpan(HeaderRoom, (int)Request.Length);

    public void Execute() => _session.Execute(this);
}
