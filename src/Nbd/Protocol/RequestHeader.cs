using System.Buffers.Binary;

namespace Nbd.Protocol;

/// <summary>A transmission-phase request header (28 bytes). The handle is opaque and echoed in the reply.</summary>
public readonly record struct RequestHeader(uint Magic, CommandFlags Flags, CommandType Type, ulong Handle, ulong Offset, uint Length)
{
    public const int Size = 28;

    public bool HasValidMagic => Magic == NbdMagic.Request;

    public static RequestHeader Read(ReadOnlySpan<byte> source) => new(
        BinaryPrimitives.ReadUInt32BigEndian(source),
        (CommandFlags)BinaryPrimitives.ReadUInt16BigEndian(source[4..]),
        (CommandType)BinaryPrimitives.ReadUInt16BigEndian(source[6..]),
        BinaryPrimitives.ReadUInt64BigEndian(source[8..]),
        BinaryPrimitives.ReadUInt64BigEndian(source[16..]),
        BinaryPrimitives.ReadUInt32BigEndian(source[24..]));

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, Magic);
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], (ushort)Flags);
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], (ushort)Type);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], Handle);
        BinaryPrimitives.WriteUInt64BigEndian(destination[16..], Offset);
        BinaryPrimitives.WriteUInt32BigEndian(destination[24..], Length);
    }
}
