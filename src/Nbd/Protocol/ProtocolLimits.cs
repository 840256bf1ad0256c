namespace Nbd.Protocol;

/// <summary>Sizes fixed by the protocol and the limits this server holds clients to.</summary>
public static class ProtocolLimits
{
    /// <summary>Export names and metadata context queries longer than this are refused (doc/proto.md: 4096).</summary>
    public const int MaxStringLength = 4096;

    /// <summary>Option payloads up to this are read and parsed; longer ones are skipped and refused with
    /// ERR_TOO_BIG (INFO with 4096-byte names and many info requests fits easily).</summary>
    public const int MaxOptionLength = 64 * 1024;

    /// <summary>Option payloads longer than this are not even skipped: the connection is dropped.</summary>
    public const int MaxSkippedOptionLength = 16 * 1024 * 1024;

    /// <summary>Padding after the NBD_OPT_EXPORT_NAME reply unless both sides set NO_ZEROES.</summary>
    public const int ExportNamePadding = 124;

    /// <summary>DF reads up to this length must be served unfragmented (the spec's floor).</summary>
    public const int MinUnfragmentedRead = 64 * 1024;
}
