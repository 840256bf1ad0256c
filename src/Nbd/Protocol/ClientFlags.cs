namespace Nbd.Protocol;

/// <summary>Flags the client answers the greeting with (32 bits). Any other bit set drops the connection.</summary>
[Flags]
public enum ClientFlags : uint
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}
