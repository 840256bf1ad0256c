using System.Buffers.Binary;
using Nbd.Devices;

namespace Nbd.Protocol;

/// <summary>
/// Structured reply chunks: a 20-byte header (magic, flags, type, handle, payload length) and the payloads
/// of the chunk types this server sends. Every writer returns the number of bytes it wrote.
/// </summary>
public static class StructuredReply
{
    public const int HeaderSize = 20;

    /// <summary>Header plus the 64-bit offset that starts an OFFSET_DATA payload; the data follows.</summary>
    public const int OffsetDataPrefixSize = HeaderSize + 8;

    public const int OffsetHoleSize = HeaderSize + 8 + 4;

    /// <summary>Header plus the metadata context id; 8 bytes per descriptor follow.</summary>
    public const int BlockStatusPrefixSize = HeaderSize + 4;

    public const int BlockStatusDescriptorSize = 8;

    public static int WriteHeader(Span<byte> destination, StructuredReplyFlags flags, StructuredReplyType type, ulong handle, int payloadLength)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, NbdMagic.StructuredReply);
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], (ushort)flags);
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], (ushort)type);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], handle);
        BinaryPrimitives.WriteUInt32BigEndian(destination[16..], checked((uint)payloadLength));
        return HeaderSize;
    }

    /// <summary>The header and offset of an OFFSET_DATA chunk carrying <paramref name="dataLength"/> bytes.</summary>
    public static int WriteOffsetDataPrefix(Span<byte> destination, StructuredReplyFlags flags, ulong handle, ulong offset, int dataLength)
    {
        int n = WriteHeader(destination, flags, StructuredReplyType.OffsetData, handle, 8 + dataLength);
        BinaryPrimitives.WriteUInt64BigEndian(destination[n..], offset);
        return OffsetDataPrefixSize;
    }

    public static int WriteOffsetHole(Span<byte> destination, StructuredReplyFlags flags, ulong handle, ulong offset, uint holeSize)
    {
        int n = WriteHeader(destination, flags, StructuredReplyType.OffsetHole, handle, 12);
        BinaryPrimitives.WriteUInt64BigEndian(destination[n..], offset);
        BinaryPrimitives.WriteUInt32BigEndian(destination[(n + 8)..], holeSize);
        return OffsetHoleSize;
    }

    /// <summary>NBD_REPLY_TYPE_ERROR with DONE: error number, message length, message.</summary>
    public static int WriteError(Span<byte> destination, ulong handle, NbdError error, ReadOnlySpan<byte> message)
    {
        int n = WriteHeader(destination, StructuredReplyFlags.Done, StructuredReplyType.Error, handle, 6 + message.Length);
        BinaryPrimitives.WriteUInt32BigEndian(destination[n..], (uint)error);
        BinaryPrimitives.WriteUInt16BigEndian(destination[(n + 4)..], checked((ushort)message.Length));
        message.CopyTo(destination[(n + 6)..]);
        return n + 6 + message.Length;
    }

    /// <summary>The header and context id of a BLOCK_STATUS chunk with <paramref name="descriptorCount"/> descriptors.</summary>
    public static int WriteBlockStatusPrefix(Span<byte> destination, StructuredReplyFlags flags, ulong handle, uint contextId, int descriptorCount)
    {
        int n = WriteHeader(destination, flags, StructuredReplyType.BlockStatus, handle, 4 + (descriptorCount * BlockStatusDescriptorSize));
        BinaryPrimitives.WriteUInt32BigEndian(destination[n..], contextId);
        return BlockStatusPrefixSize;
    }

    public static int WriteBlockStatusDescriptor(Span<byte> destination, uint length, ExtentFlags flags)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, length);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], (uint)flags);
        return BlockStatusDescriptorSize;
    }
}
