namespace Nbd.Protocol;

/// <summary>Chunk types of a structured reply; error chunks have bit 15 set.</summary>
public enum StructuredReplyType : ushort
{
    None = 0,
    OffsetData = 1,
    OffsetHole = 2,
    BlockStatus = 5,
    Error = 0x8001,
    ErrorOffset = 0x8002,
}
