using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using ZramDaemon.Native;

namespace ZramDaemon.Attach;

/// <summary>
/// The kernel nbd driver's generic netlink family ("nbd", include/uapi/linux/nbd-netlink.h): NBD_CMD_CONNECT
/// hands the kernel already-negotiated sockets with the size, block size and server flags, and returns the
/// device index (the kernel picks a free one when none is given); the kernel keeps its own reference to the
/// sockets, so no thread has to stay in an ioctl. NBD_CMD_DISCONNECT ends it.
/// Netlink messages are in host byte order: nlmsghdr (16 bytes), genlmsghdr (4), then 4-byte-aligned attributes.
/// </summary>
public sealed class NbdNetlink : IDisposable
{
    private const ushort GenlIdCtrl = 0x10;
    private const byte CtrlCmdGetFamily = 3;
    private const ushort CtrlAttrFamilyId = 1;
    private const ushort CtrlAttrFamilyName = 2;
    private const ushort NlmsgError = 2;
    private const ushort NlmsgDone = 3;
    private const ushort NlmFRequest = 1;
    private const ushort NlmFAck = 4;
    private const ushort NlaFNested = 0x8000;

    private const byte NbdCmdConnect = 1;
    private const byte NbdCmdDisconnect = 2;
    private const byte NbdGenlVersion = 1;
    private const ushort NbdAttrIndex = 1;
    private const ushort NbdAttrSizeBytes = 2;
    private const ushort NbdAttrBlockSizeBytes = 3;
    private const ushort NbdAttrTimeout = 4;
    private const ushort NbdAttrServerFlags = 5;
    private const ushort NbdAttrSockets = 7;
    private const ushort NbdAttrBackendIdentifier = 10; // Linux 5.13+: /sys/block/nbdN/backend
    private const ushort NbdSockItem = 1;
    private const ushort NbdSockFd = 1;

    private const int HeaderLength = 16 + 4;

    private readonly int _fd;
    private readonly ushort _family;
    private uint _sequence;

    private NbdNetlink(int fd, ushort family)
    {
        _fd = fd;
        _family = family;
    }

    /// <summary>Opens a generic netlink socket and resolves the "nbd" family.</summary>
    /// <exception cref="NbdAttachException">no netlink, or the nbd module is not loaded (<see cref="NbdAttachException.Errno"/> ENOENT).</exception>
    public static NbdNetlink Open()
    {
        int fd = Interop.Libc.Socket(Interop.Libc.AfNetlink, Interop.Libc.SockRaw | Interop.Libc.SockCloexec, Interop.Libc.NetlinkGeneric);
        if (fd < 0)
        {
            throw new NbdAttachException("cannot open a generic netlink socket", Marshal.GetLastPInvokeError());
        }

        try
        {
            Span<byte> address = stackalloc byte[12]; // struct sockaddr_nl: family, pad, pid 0 (kernel assigns), groups 0
            address.Clear();
            BinaryPrimitives.WriteUInt16LittleEndian(address, Interop.Libc.AfNetlink);
            if (Interop.Libc.Bind(fd, address, address.Length) != 0)
            {
                throw new NbdAttachException("cannot bind the generic netlink socket", Marshal.GetLastPInvokeError());
            }

            var resolver = new NbdNetlink(fd, GenlIdCtrl);
            var request = new MessageWriter(GenlIdCtrl, CtrlCmdGetFamily, version: 1);
            request.PutString(CtrlAttrFamilyName, "nbd");
            ushort family = 0;
            resolver.Transact(request, (type, attribute) =>
            {
                if (type == CtrlAttrFamilyId && attribute.Length >= 2)
                {
                    family = MemoryMarshal.Read<ushort>(attribute);
                }
            }, "the kernel has no nbd netlink family (is the nbd module loaded? modprobe nbd)");
            if (family == 0)
            {
                throw new NbdAttachException("the kernel did not report the nbd netlink family id");
            }

            return new NbdNetlink(fd, family);
        }
        catch
        {
            Interop.Libc.Close(fd);
            throw;
        }
    }

    /// <summary>NBD_CMD_CONNECT: binds the sockets (all connected to the same export, already past the
    /// handshake) to /dev/nbd<paramref name="index"/>, or to a free device when <paramref name="index"/> is null.</summary>
    /// <param name="timeoutSeconds">per-request timeout, 0 for the kernel's default.</param>
    /// <returns>the device index the kernel used.</returns>
    /// <param name="backend">What /sys/block/nbdN/backend says while the device is connected (null: nothing).</param>
    public int Connect(int? index, NbdExportInfo export, int blockSize, IReadOnlyList<int> socketFds, int timeoutSeconds = 0, string? backend = null)
    {
        ArgumentNullException.ThrowIfNull(socketFds);
        var request = new MessageWriter(_family, NbdCmdConnect, NbdGenlVersion);
        if (backend is not null)
        {
            request.PutString(NbdAttrBackendIdentifier, backend);
        }

        if (index is int i)
        {
            request.PutUInt32(NbdAttrIndex, (uint)i);
        }

        request.PutUInt64(NbdAttrSizeBytes, (ulong)export.Size);
        request.PutUInt64(NbdAttrBlockSizeBytes, (ulong)blockSize);
        request.PutUInt64(NbdAttrServerFlags, export.TransmissionFlags);
        if (timeoutSeconds > 0)
        {
            request.PutUInt64(NbdAttrTimeout, (ulong)timeoutSeconds);
        }

        int sockets = request.BeginNested(NbdAttrSockets);
        foreach (int fd in socketFds)
        {
            int item = request.BeginNested(NbdSockItem);
            request.PutUInt32(NbdSockFd, (uint)fd);
            request.EndNested(item);
        }

        request.EndNested(sockets);
        int connected = index ?? -1;
        Transact(request, (type, attribute) =>
        {
            if (type == NbdAttrIndex && attribute.Length >= 4)
            {
                connected = (int)MemoryMarshal.Read<uint>(attribute);
            }
        }, "NBD_CMD_CONNECT failed");
        if (connected < 0)
        {
            throw new NbdAttachException("the kernel did not say which nbd device it connected");
        }

        return connected;
    }

    /// <summary>NBD_CMD_DISCONNECT: the kernel fails outstanding requests, closes its sockets and empties the device.</summary>
    public void Disconnect(int index)
    {
        var request = new MessageWriter(_family, NbdCmdDisconnect, NbdGenlVersion);
        request.PutUInt32(NbdAttrIndex, (uint)index);
        Transact(request, static (_, _) => { }, $"NBD_CMD_DISCONNECT of /dev/nbd{index} failed");
    }

    public void Dispose() => Interop.Libc.Close(_fd);

    /// <summary>Sends one request with NLM_F_ACK and reads until the kernel's ack, passing each top-level
    /// attribute of the reply messages to <paramref name="onAttribute"/>.</summary>
    private void Transact(MessageWriter request, AttributeVisitor onAttribute, string failure)
    {
        uint sequence = ++_sequence;
        ReadOnlySpan<byte> message = request.Finish(sequence);
        if (Interop.Libc.Send(_fd, message, (nuint)message.Length, 0) != message.Length)
        {
            throw new NbdAttachException(failure, Marshal.GetLastPInvokeError());
        }

        byte[] buffer = new byte[64 * 1024];
        while (true)
        {
            nint received = Interop.Libc.Receive(_fd, buffer, (nuint)buffer.Length, 0);
            if (received < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Interop.Libc.EIntr)
                {
                    continue;
                }

                throw new NbdAttachException(failure, errno);
            }

            ReadOnlySpan<byte> rest = buffer.AsSpan(0, (int)received);
            while (rest.Length >= 16)
            {
                int length = (int)MemoryMarshal.Read<uint>(rest);
                ushort type = MemoryMarshal.Read<ushort>(rest[4..]);
                uint replySequence = MemoryMarshal.Read<uint>(rest[8..]);
                if (length < 16 || length > rest.Length)
                {
                    throw new NbdAttachException(failure + ": malformed netlink reply");
                }

                ReadOnlySpan<byte> body = rest[16..length];
                rest = rest[Math.Min(Align(length), rest.Length)..];
                if (replySequence != sequence)
                {
                    continue;
                }

                if (type == NlmsgError)
                {
                    int error = body.Length >= 4 ? MemoryMarshal.Read<int>(body) : -Interop.Libc.EInval;
                    if (error == 0)
                    {
                        return; // the ack
                    }

                    throw new NbdAttachException(failure, -error);
                }

                if (type == NlmsgDone)
                {
                    return;
                }

                ReadOnlySpan<byte> attributes = body.Length >= 4 ? body[4..] : [];
                while (attributes.Length >= 4)
                {
                    int attributeLength = MemoryMarshal.Read<ushort>(attributes);
                    ushort attributeType = (ushort)(MemoryMarshal.Read<ushort>(attributes[2..]) & ~NlaFNested);
                    if (attributeLength < 4 || attributeLength > attributes.Length)
                    {
                        break;
                    }

                    onAttribute(attributeType, attributes[4..attributeLength]);
                    attributes = attributes[Math.Min(Align(attributeLength), attributes.Length)..];
                }
            }
        }
    }

    private static int Align(int length) => (length + 3) & ~3;

    private delegate void AttributeVisitor(ushort type, ReadOnlySpan<byte> value);

    /// <summary>Builds one generic netlink request: headers first, attributes appended, lengths patched at the end.</summary>
    private sealed class MessageWriter
    {
        private readonly byte[] _buffer = new byte[4096];
        private int _length = HeaderLength;

        public MessageWriter(ushort family, byte command, byte version)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(_buffer.AsSpan(4), family);
            BinaryPrimitives.WriteUInt16LittleEndian(_buffer.AsSpan(6), NlmFRequest | NlmFAck);
            _buffer[16] = command;
            _buffer[17] = version;
        }

        public void PutUInt32(ushort type, uint value)
        {
            Span<byte> v = stackalloc byte[4];
            MemoryMarshal.Write(v, in value);
            Put(type, v);
        }

        public void PutUInt64(ushort type, ulong value)
        {
            Span<byte> v = stackalloc byte[8];
            MemoryMarshal.Write(v, in value);
            Put(type, v);
        }

        public void PutString(ushort type, string value)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(value + "\0");
            Put(type, bytes);
        }

        /// <summary>Starts a nested attribute; returns its offset for <see cref="EndNested"/>.</summary>
        public int BeginNested(ushort type)
        {
            int start = _length;
            BinaryPrimitives.WriteUInt16LittleEndian(_buffer.AsSpan(start + 2), (ushort)(type | NlaFNested));
            _length += 4;
            return start;
        }

        public void EndNested(int start) =>
            BinaryPrimitives.WriteUInt16LittleEndian(_buffer.AsSpan(start), (ushort)(_length - start));

        public ReadOnlySpan<byte> Finish(uint sequence)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(_buffer, (uint)_length);
            BinaryPrimitives.WriteUInt32LittleEndian(_buffer.AsSpan(8), sequence);
            return _buffer.AsSpan(0, _length);
        }

        private void Put(ushort type, ReadOnlySpan<byte> value)
        {
            int total = 4 + value.Length;
            BinaryPrimitives.WriteUInt16LittleEndian(_buffer.AsSpan(_length), (ushort)total);
            BinaryPrimitives.WriteUInt16LittleEndian(_buffer.AsSpan(_length + 2), type);
            value.CopyTo(_buffer.AsSpan(_length + 4));
            _buffer.AsSpan(_length + total, Align(total) - total).Clear();
            _length += Align(total);
        }
    }
}
