using System.Buffers.Binary;

namespace Nbd.Protocol;

/// <summary>The 18 bytes a fixed-newstyle server sends as soon as a client connects.</summary>
public static class ServerGreeting
{
    public const int Length = 18;

    public static void Write(Span<byte> destination, HandshakeFlags flags)
    {
        if (destination.Length < Length)
        {
            throw new ArgumentException($"The greeting needs {Length} bytes.", nameof(destination));
        }

        BinaryPrimitives.WriteUInt64BigEndian(destination, NbdMagic.InitPasswd);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], NbdMagic.IHaveOpt);
        BinaryPrimitives.WriteUInt16BigEndian(destination[16..], (ushort)flags);
    }
}
