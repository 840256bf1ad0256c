namespace Nbd.Sessions;

/// <summary>What requests on one connection are checked against: the export's geometry and what was negotiated.</summary>
internal readonly record struct ConnectionLimits(
    long Size,
    bool ReadOnly,
    int MinimumBlockSize,
    int MaxPayload,
    bool StructuredReplies,
    bool BaseAllocation,
    bool FastZero);
