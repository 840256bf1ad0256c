using Nbd.Protocol;

namespace Nbd.Sessions;

/// <summary>What option haggling agreed on: the export, the stream to use from now on (TLS or not), and the
/// features this one connection negotiated.</summary>
internal sealed record HandshakeResult(
    Stream Stream,
    NbdExport Export,
    TransmissionFlags Flags,
    bool StructuredReplies,
    bool BaseAllocation);
