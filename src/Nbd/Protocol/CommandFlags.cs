namespace Nbd.Protocol;

/// <summary>Flags of a transmission-phase request (16 bits).</summary>
[Flags]
public enum CommandFlags : ushort
{
    None = 0,
    Fua = 1 << 0,
    NoHole = 1 << 1,
    DontFragment = 1 << 2,
    RequestOne = 1 << 3,
    FastZero = 1 << 4,
}
