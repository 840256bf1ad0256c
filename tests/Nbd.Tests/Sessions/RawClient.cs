using System.Buffers.Binary;
using System.Net.Sockets;
using Nbd.Devices;
using Nbd.Protocol;

namespace Nbd.Tests.Sessions;

/// <summary>A byte-level NBD client for the conversations the real clients never have (malformed ones).
/// Every read has a timeout; end of stream is reported as null, never as a hang.</summary>
public sealed class RawClient : IDisposable
{
    /// <summary>Long: it only bounds a hang, and a loaded machine may take seconds to schedule a server thread.</summary>
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private RawClient(Socket socket) => Socket = socket;

    public Socket Socket { get; }

    public static async Task<RawClient> ConnectAsync(string socketPath)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
        return new RawClient(socket);
    }

    public static RawClient Wrap(Socket socket) => new(socket);

    /// <summary>Reads the greeting and answers with <paramref name="clientFlags"/>.</summary>
    public async Task<HandshakeFlags> StartAsync(ClientFlags clientFlags = ClientFlags.FixedNewstyle | ClientFlags.NoZeroes)
    {
        byte[] greeting = await ReadExactAsync(ServerGreeting.Length) ?? throw new EndOfStreamException();
        Assert.Equal(NbdMagic.InitPasswd, BinaryPrimitives.ReadUInt64BigEndian(greeting));
        Assert.Equal(NbdMagic.IHaveOpt, BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)));
        var flags = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(flags, (uint)clientFlags);
        await SendAsync(flags);
        return (HandshakeFlags)BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16));
    }

    public Task SendOptionAsync(uint option, ReadOnlySpan<byte> payload) => SendOptionAsync(option, payload.ToArray(), (uint)payload.Length);

    public async Task SendOptionAsync(uint option, byte[] payload, uint declaredLength)
    {
        var bytes = new byte[16 + payload.Length];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, NbdMagic.IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(12), declaredLength);
        payload.CopyTo(bytes, 16);
        await SendAsync(bytes);
    }

    public sealed record OptionReplyMessage(uint Option, OptionReplyType Type, byte[] Payload);

    public async Task<OptionReplyMessage?> ReadOptionReplyAsync()
    {
        byte[]? header = await ReadExactAsync(OptionReply.HeaderSize);
        if (header is null)
        {
            return null;
        }

        Assert.Equal(NbdMagic.OptionReply, BinaryPrimitives.ReadUInt64BigEndian(header));
        uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
        Assert.True(length < 1 << 20, "option reply length " + length);
        byte[]? payload = await ReadExactAsync((int)length);
        return payload is null
            ? null
            : new OptionReplyMessage(BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8)),
                (OptionReplyType)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12)), payload);
    }

    /// <summary>Sends GO for <paramref name="name"/> with the given info requests and reads the replies up to ACK.
    /// Returns the transmission flags from NBD_INFO_EXPORT, or the error reply type.</summary>
    public Task<(TransmissionFlags Flags, OptionReplyType Final, List<OptionReplyMessage> Replies)> GoAsync(string name, params ushort[] infos)
        => InfoOrGoAsync(OptionType.Go, name, infos);

    /// <summary>Sends INFO or GO (<paramref name="option"/>), as <see cref="GoAsync"/>.</summary>
    public async Task<(TransmissionFlags Flags, OptionReplyType Final, List<OptionReplyMessage> Replies)> InfoOrGoAsync(OptionType option, string name, params ushort[] infos)
    {
        byte[] nameBytes = System.Text.Encoding.UTF8.GetBytes(name);
        var payload = new byte[4 + nameBytes.Length + 2 + (2 * infos.Length)];
        BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)nameBytes.Length);
        nameBytes.CopyTo(payload, 4);
        BinaryPrimitives.WriteUInt16BigEndian(payload.AsSpan(4 + nameBytes.Length), (ushort)infos.Length);
        for (int i = 0; i < infos.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(payload.AsSpan(4 + nameBytes.Length + 2 + (2 * i)), infos[i]);
        }

        await SendOptionAsync((uint)option, payload);
        var replies = new List<OptionReplyMessage>();
        TransmissionFlags flags = 0;
        while (true)
        {
            OptionReplyMessage reply = await ReadOptionReplyAsync() ?? throw new EndOfStreamException();
            replies.Add(reply);
            if (reply.Type == OptionReplyType.Info && BinaryPrimitives.ReadUInt16BigEndian(reply.Payload) == (ushort)InfoType.Export)
            {
                flags = (TransmissionFlags)BinaryPrimitives.ReadUInt16BigEndian(reply.Payload.AsSpan(10));
            }

            if (reply.Type != OptionReplyType.Info)
            {
                return (flags, reply.Type, replies);
            }
        }
    }

    public async Task SendRequestAsync(CommandType type, ulong handle, ulong offset, uint length, CommandFlags flags = 0, byte[]? payload = null)
    {
        var bytes = new byte[RequestHeader.Size + (payload?.Length ?? 0)];
        new RequestHeader(NbdMagic.Request, flags, type, handle, offset, length).Write(bytes);
        payload?.CopyTo(bytes, RequestHeader.Size);
        await SendAsync(bytes);
    }

    /// <summary>Reads a simple reply; its data too when it is a successful read of <paramref name="readLength"/>.</summary>
    public async Task<(NbdError Error, ulong Handle, byte[] Data)?> ReadSimpleReplyAsync(int readLength = 0)
    {
        byte[]? header = await ReadExactAsync(SimpleReply.Size);
        if (header is null)
        {
            return null;
        }

        Assert.Equal(NbdMagic.SimpleReply, BinaryPrimitives.ReadUInt32BigEndian(header));
        var error = (NbdError)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4));
        byte[] data = error == NbdError.None && readLength > 0 ? await ReadExactAsync(readLength) ?? throw new EndOfStreamException() : [];
        return (error, BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8)), data);
    }

    public async Task SendAsync(byte[] bytes)
    {
        using var timeout = new CancellationTokenSource(Timeout);
        await Socket.SendAsync(bytes, SocketFlags.None, timeout.Token);
    }

    /// <summary>Null when the server closed the connection first.</summary>
    public async Task<byte[]?> ReadExactAsync(int count)
    {
        var buffer = new byte[count];
        int read = 0;
        using var timeout = new CancellationTokenSource(Timeout);
        while (read < count)
        {
            int n;
            try
            {
                n = await Socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, timeout.Token);
            }
            catch (SocketException)
            {
                return null;
            }

            if (n == 0)
            {
                return null;
            }

            read += n;
        }

        return buffer;
    }

    /// <summary>True when the server closes the connection (reads end of stream) within the timeout.</summary>
    public async Task<bool> IsClosedByServerAsync()
    {
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(Timeout);
        try
        {
            while (await Socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token) > 0)
            {
            }

            return true;
        }
        catch (SocketException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public void Dispose() => Socket.Dispose();
}
