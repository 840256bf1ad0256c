using System.Buffers.Binary;
using Nbd.Devices;

namespace Nbd.Protocol;

/// <summary>
/// Option replies of the fixed newstyle handshake: a 20-byte header (magic, option, reply type, payload length)
/// and, per reply type, the payload layouts below. Every writer returns the number of bytes it wrote.
/// </summary>
public static class OptionReply
{
    public const int HeaderSize = 20;

    /// <summary>NBD_INFO_EXPORT: type, size, transmission flags.</summary>
    public const int InfoExportPayloadSize = 2 + 8 + 2;

    /// <summary>NBD_INFO_BLOCK_SIZE: type, minimum, preferred, maximum payload.</summary>
    public const int InfoBlockSizePayloadSize = 2 + 4 + 4 + 4;

    public static int WriteHeader(Span<byte> destination, uint option, OptionReplyType type, int payloadLength)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, NbdMagic.OptionReply);
        BinaryPrimitives.WriteUInt32BigEndian(destination[8..], option);
        BinaryPrimitives.WriteUInt32BigEndian(destination[12..], (uint)type);
        BinaryPrimitives.WriteUInt32BigEndian(destination[16..], checked((uint)payloadLength));
        return HeaderSize;
    }

    /// <summary>A reply with no payload (ACK, or an error without a message).</summary>
    public static int Write(Span<byte> destination, uint option, OptionReplyType type) =>
        WriteHeader(destination, option, type, 0);

    /// <summary>An error reply carrying a human-readable message.</summary>
    public static int WriteError(Span<byte> destination, uint option, OptionReplyType type, ReadOnlySpan<byte> message)
    {
        int n = WriteHeader(destination, option, type, message.Length);
        message.CopyTo(destination[n..]);
        return n + message.Length;
    }

    /// <summary>NBD_REP_SERVER for NBD_OPT_LIST: name length, name, then the description.</summary>
    public static int WriteServer(Span<byte> destination, uint option, ReadOnlySpan<byte> name, ReadOnlySpan<byte> description)
    {
        int n = WriteHeader(destination, option, OptionReplyType.Server, 4 + name.Length + description.Length);
        BinaryPrimitives.WriteUInt32BigEndian(destination[n..], (uint)name.Length);
        n += 4;
        name.CopyTo(destination[n..]);
        n += name.Length;
        description.CopyTo(destination[n..]);
        return n + description.Length;
    }

    public static int WriteInfoExport(Span<byte> destination, uint option, long size, TransmissionFlags flags)
    {
        int n = WriteHeader(destination, option, OptionReplyType.Info, InfoExportPayloadSize);
        BinaryPrimitives.WriteUInt16BigEndian(destination[n..], (ushort)InfoType.Export);
        BinaryPrimitives.WriteUInt64BigEndian(destination[(n + 2)..], (ulong)size);
        BinaryPrimitives.WriteUInt16BigEndian(destination[(n + 10)..], (ushort)flags);
        return n + InfoExportPayloadSize;
    }

    /// <summary>NBD_INFO_NAME or NBD_INFO_DESCRIPTION: the type, then the string (no length field).</summary>
    public static int WriteInfoString(Span<byte> destination, uint option, InfoType type, ReadOnlySpan<byte> text)
    {
        int n = WriteHeader(destination, option, OptionReplyType.Info, 2 + text.Length);
        BinaryPrimitives.WriteUInt16BigEndian(destination[n..], (ushort)type);
        text.CopyTo(destination[(n + 2)..]);
        return n + 2 + text.Length;
    }

    public static int WriteInfoBlockSize(Span<byte> destination, uint option, uint minimum, uint preferred, uint maximumPayload)
    {
        int n = WriteHeader(destination, option, OptionReplyType.Info, InfoBlockSizePayloadSize);
        BinaryPrimitives.WriteUInt16BigEndian(destination[n..], (ushort)InfoType.BlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(destination[(n + 2)..], minimum);
        BinaryPrimitives.WriteUInt32BigEndian(destination[(n + 6)..], preferred);
        BinaryPrimitives.WriteUInt32BigEndian(destination[(n + 10)..], maximumPayload);
        return n + InfoBlockSizePayloadSize;
    }

    /// <summary>NBD_REP_META_CONTEXT: context id, then the context name.</summary>
    public static int WriteMetaContext(Span<byte> destination, uint option, uint contextId, ReadOnlySpan<byte> name)
    {
        int n = WriteHeader(destination, option, OptionReplyType.MetaContext, 4 + name.Length);
        BinaryPrimitives.WriteUInt32BigEndian(destination[n..], contextId);
        name.CopyTo(destination[(n + 4)..]);
        return n + 4 + name.Length;
    }

    /// <summary>The reply to NBD_OPT_EXPORT_NAME (no option header): size, flags, and 124 zero bytes unless
    /// NO_ZEROES was agreed.</summary>
    public static int WriteExportNameReply(Span<byte> destination, long size, TransmissionFlags flags, bool noZeroes)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, (ulong)size);
        BinaryPrimitives.WriteUInt16BigEndian(destination[8..], (ushort)flags);
        if (noZeroes)
        {
            return 10;
        }

        destination.Slice(10, ProtocolLimits.ExportNamePadding).Clear();
        return 10 + ProtocolLimits.ExportNamePadding;
    }
}
