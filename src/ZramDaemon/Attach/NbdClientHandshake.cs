using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Nbd.Protocol;

namespace ZramDaemon.Attach;

/// <summary>
/// The client side of the fixed-newstyle handshake (doc/proto.md), done in userspace before the socket is
/// handed to the kernel, which only speaks the transmission phase: NBD_OPT_GO for the export with an
/// NBD_INFO_BLOCK_SIZE request, and no structured replies (the kernel's nbd driver reads simple replies only).
/// Blocking calls on a blocking socket: this runs once per attach, never on the I/O path.
/// </summary>
public static class NbdClientHandshake
{
    private const uint RepErrorBit = 0x8000_0000;
    private const int MaxReplyLength = 64 * 1024;

    /// <summary>Negotiates <paramref name="exportName"/> on <paramref name="socket"/>; afterwards the socket is
    /// in the transmission phase.</summary>
    /// <exception cref="NbdAttachException">the server refused or spoke something else.</exception>
    public static NbdExportInfo Negotiate(Socket socket, string exportName)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentNullException.ThrowIfNull(exportName);
        Span<byte> greeting = stackalloc byte[18];
        ReceiveExactly(socket, greeting);
        if (BinaryPrimitives.ReadUInt64BigEndian(greeting) != NbdMagic.InitPasswd
            || BinaryPrimitives.ReadUInt64BigEndian(greeting[8..]) != NbdMagic.IHaveOpt)
        {
            throw new NbdAttachException("the server is not a fixed-newstyle NBD server (bad greeting)");
        }

        ushort serverFlags = BinaryPrimitives.ReadUInt16BigEndian(greeting[16..]);
        if ((serverFlags & (ushort)HandshakeFlags.FixedNewstyle) == 0)
        {
            throw new NbdAttachException("the server does not offer the fixed-newstyle handshake");
        }

        Span<byte> clientFlags = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(clientFlags, (uint)ClientFlags.FixedNewstyle | (uint)(serverFlags & (ushort)HandshakeFlags.NoZeroes));
        SendExactly(socket, clientFlags);

        byte[] name = Encoding.UTF8.GetBytes(exportName);
        byte[] option = new byte[16 + 4 + name.Length + 2 + 2];
        BinaryPrimitives.WriteUInt64BigEndian(option, NbdMagic.IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(8), (uint)OptionType.Go);
        BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(12), (uint)(option.Length - 16));
        BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(16), (uint)name.Length);
        name.CopyTo(option.AsSpan(20));
        BinaryPrimitives.WriteUInt16BigEndian(option.AsSpan(20 + name.Length), 1);
        BinaryPrimitives.WriteUInt16BigEndian(option.AsSpan(22 + name.Length), (ushort)InfoType.BlockSize);
        SendExactly(socket, option);

        long size = -1;
        ushort flags = 0;
        int preferred = 0;
        Span<byte> header = stackalloc byte[20];
        while (true)
        {
            ReceiveExactly(socket, header);
            uint replyType = BinaryPrimitives.ReadUInt32BigEndian(header[12..]);
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header[16..]);
            if (BinaryPrimitives.ReadUInt64BigEndian(header) != NbdMagic.OptionReply
                || BinaryPrimitives.ReadUInt32BigEndian(header[8..]) != (uint)OptionType.Go || length > MaxReplyLength)
            {
                throw new NbdAttachException("the server sent a malformed option reply");
            }

            byte[] data = new byte[length];
            ReceiveExactly(socket, data);
            if ((replyType & RepErrorBit) != 0)
            {
                string text = data.Length > 0 ? ": " + Encoding.UTF8.GetString(data) : string.Empty;
                throw new NbdAttachException($"the server refused export '{exportName}' (NBD_REP_ERR 0x{replyType:x}){text}");
            }

            if (replyType == (uint)OptionReplyType.Ack)
            {
                break;
            }

            if (replyType == (uint)OptionReplyType.Info && data.Length >= 2)
            {
                ushort info = BinaryPrimitives.ReadUInt16BigEndian(data);
                if (info == (ushort)InfoType.Export && data.Length >= 12)
                {
                    size = BinaryPrimitives.ReadInt64BigEndian(data.AsSpan(2));
                    flags = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(10));
                }
                else if (info == (ushort)InfoType.BlockSize && data.Length >= 14)
                {
                    preferred = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(6)), int.MaxValue);
                }
            }
        }

        if (size < 0)
        {
            throw new NbdAttachException("the server acknowledged NBD_OPT_GO without NBD_INFO_EXPORT (size and flags)");
        }

        return new NbdExportInfo(size, flags, preferred);
    }

    private static void SendExactly(Socket socket, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            data = data[socket.Send(data)..];
        }
    }

    private static void ReceiveExactly(Socket socket, Span<byte> data)
    {
        while (!data.IsEmpty)
        {
            int n = socket.Receive(data);
            if (n == 0)
            {
                throw new NbdAttachException("the server closed the connection during the handshake");
            }

            data = data[n..];
        }
    }
}
