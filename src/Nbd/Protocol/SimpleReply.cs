using System.Buffers.Binary;
using Nbd.Devices;

namespace Nbd.Protocol;

/// <summary>The 16-byte simple reply: magic, error, handle (read data follows when the error is zero).</summary>
public static class SimpleReply
{
    public const int Size = 16;

    public static int Write(Span<byte> destination, NbdError error, ulong handle)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, NbdMagic.SimpleReply);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], (uint)error);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], handle);
        return Size;
    }
}
