namespace Nbd.Protocol;

/// <summary>Transmission-phase request types.</summary>
public enum CommandType : ushort
{
    Read = 0,
    Write = 1,
    Disconnect = 2,
    Flush = 3,
    Trim = 4,
    Cache = 5,
    WriteZeroes = 6,
    BlockStatus = 7,
}
