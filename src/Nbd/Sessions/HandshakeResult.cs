using Nbd.Protocol;

namespace Nbd.Sessions;

/// <summary>What option haggling agreed on: the export, the stream to use from now on (TLS or not), and the
/// features this one connection negotiated. <paramref name="BlockSizesRequested"/>: NBD_OPT_GO asked for
/// NBD_INFO_BLOCK_SIZE, so the client keeps to the minimum block size it was sent.</summary>
internal sealed record HandshakeResult(
    Stream Stream,
    NbdExport Export,
    TransmissionFlags Flags,
    bool StructuredReplies,
    bool BaseAllocation,
    bool BlockSizesRequested);
