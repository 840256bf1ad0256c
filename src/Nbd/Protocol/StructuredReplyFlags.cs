namespace Nbd.Protocol;

[Flags]
public enum StructuredReplyFlags : ushort
{
    None = 0,

    /// <summary>The last chunk of a reply.</summary>
    Done = 1 << 0,
}
