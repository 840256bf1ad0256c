namespace Nbd.Protocol;

/// <summary>Flags the server sends in its greeting (16 bits).</summary>
[Flags]
public enum HandshakeFlags : ushort
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}
