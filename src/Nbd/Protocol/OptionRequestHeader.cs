using System.Buffers.Binary;

namespace Nbd.Protocol;

/// <summary>The 16 bytes that start every option: "IHAVEOPT", the option number and its payload length.</summary>
public readonly record struct OptionRequestHeader(ulong Magic, uint Option, uint Length)
{
    public const int Size = 16;

    public bool HasValidMagic => Magic == NbdMagic.IHaveOpt;

    public static OptionRequestHeader Read(ReadOnlySpan<byte> source) => new(
        BinaryPrimitives.ReadUInt64BigEndian(source),
        BinaryPrimitives.ReadUInt32BigEndian(source[8..]),
        BinaryPrimitives.ReadUInt32BigEndian(source[12..]));
}
