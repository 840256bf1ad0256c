using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Nbd.Devices;
using Nbd.Protocol;

namespace ZramDaemon.Tests.Faults;

/// <summary>
/// A deliberately small NBD client for fault tests, which need to do what no real client does on purpose
/// (stop half-way through a request, vanish mid-handshake). Fixed newstyle, NO_ZEROES, GO without
/// information requests, simple replies only.
/// </summary>
public sealed class WireClient : IDisposable
{
    private WireClient(Socket socket) => Socket = socket;

    public Socket Socket { get; }

    public static async Task<WireClient> ConnectAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
        return new WireClient(socket);
    }

    /// <summary>Connects and negotiates up to transmission on <paramref name="export"/>.</summary>
    public static async Task<WireClient> OpenAsync(string path, string export)
    {
        WireClient client = await ConnectAsync(path);
        await client.ReceiveExactAsync(ServerGreeting.Length);
        await client.SendAsync(GoOption(export));
        while (true)
        {
            byte[] header = await client.ReceiveExactAsync(OptionReply.HeaderSize);
            var type = (OptionReplyType)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            int length = (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
            await client.ReceiveExactAsync(length);
            if (type == OptionReplyType.Ack)
            {
                return client;
            }

            if (type != OptionReplyType.Info)
            {
                throw new InvalidOperationException($"GO refused: {type}");
            }
        }
    }

    /// <summary>Client flags (fixed newstyle, no zeroes) and one GO option for <paramref name="export"/>.</summary>
    public static byte[] GoOption(string export)
    {
        byte[] name = Encoding.UTF8.GetBytes(export);
        var bytes = new byte[4 + 16 + 4 + name.Length + 2];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, (uint)(ClientFlags.FixedNewstyle | ClientFlags.NoZeroes));
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(4), NbdMagic.IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(12), (uint)OptionType.Go);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(16), (uint)(4 + name.Length + 2));
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(20), (uint)name.Length);
        name.CopyTo(bytes.AsSpan(24));
        return bytes;
    }

    public static byte[] Header(CommandType type, ulong cookie, long offset, int length)
    {
        var header = new byte[RequestHeader.Size];
        new RequestHeader(NbdMagic.Request, CommandFlags.None, type, cookie, (ulong)offset, (uint)length).Write(header);
        return header;
    }

    public async Task<NbdError> WriteAsync(long offset, byte[] data)
    {
        await SendAsync([.. Header(CommandType.Write, 1, offset, data.Length), .. data]);
        return await ReplyAsync(1);
    }

    public async Task<NbdError> TrimAsync(long offset, int length)
    {
        await SendAsync(Header(CommandType.Trim, 2, offset, length));
        return await ReplyAsync(2);
    }

    public async Task<byte[]> ReadAsync(long offset, int length)
    {
        await SendAsync(Header(CommandType.Read, 3, offset, length));
        NbdError error = await ReplyAsync(3);
        return error == NbdError.None ? await ReceiveExactAsync(length) : throw new IOException($"read failed: {error}");
    }

    public async Task SendAsync(byte[] bytes) => await Socket.SendAsync(bytes, SocketFlags.None);

    public async Task<byte[]> ReceiveExactAsync(int length)
    {
        var buffer = new byte[length];
        int done = 0;
        while (done < length)
        {
            int n = await Socket.ReceiveAsync(buffer.AsMemory(done), SocketFlags.None);
            if (n == 0)
            {
                throw new EndOfStreamException($"server closed after {done} of {length} bytes");
            }

            done += n;
        }

        return buffer;
    }

    /// <summary>Closes as a killed process's socket is closed: at once, unsent data dropped (RST).</summary>
    public void Kill()
    {
        Socket.LingerState = new LingerOption(true, 0);
        Socket.Close();
    }

    public void Dispose() => Socket.Dispose();

    private async Task<NbdError> ReplyAsync(ulong cookie)
    {
        byte[] reply = await ReceiveExactAsync(16);
        if (BinaryPrimitives.ReadUInt32BigEndian(reply) != NbdMagic.SimpleReply || BinaryPrimitives.ReadUInt64BigEndian(reply.AsSpan(8)) != cookie)
        {
            throw new IOException("unexpected reply " + Convert.ToHexString(reply));
        }

        return (NbdError)BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4));
    }
}
