using System.Buffers.Binary;
using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd;
using Nbd.Protocol;

namespace Zram.Benchmarks.Nbd;

/// <summary>
/// The server's request path over a real Unix socket pair: a client thread sends READ or WRITE requests and
/// reads the replies, the server (in this process) validates, runs them on the thread pool against a flat
/// memory device and replies. MemoryDiagnoser counts allocations on every thread, so "Allocated" is what the
/// server allocates per request (the client side allocates nothing). Depth 1 is ping-pong; depth 32 keeps 32
/// requests in flight (per-request figures, OperationsPerInvoke).
/// </summary>
[MemoryDiagnoser]
public class NbdRequestBenchmarks
{
    private const int BlockSize = 4096;
    private const int Depth = 32;

    private NbdServer? _server;
    private Socket? _client;
    private Task? _serving;
    private byte[] _writeRequests = [];
    private byte[] _readRequests = [];
    private byte[] _replies = [];

    [Params(false, true)]
    public bool Structured { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _server = new NbdServer(new NbdServerOptions(), NullLoggerFactory.Instance);
        _server.AddExport(new NbdExport("bench", "flat memory", new FlatMemoryDevice(64 << 20)));
        string path = Path.Combine(Path.GetTempPath(), "nbd-bench-" + Environment.ProcessId + ".sock");
        File.Delete(path);
        using (var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(1);
            _client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            _client.Connect(new UnixDomainSocketEndPoint(path));
            _serving = _server.ServeConnectionAsync(listener.Accept(), simpleRepliesOnly: false, CancellationToken.None);
        }

        File.Delete(path);
        Handshake(_client, Structured);

        // Depth requests of each kind, for consecutive 4 KiB blocks; the writes carry their payload.
        _writeRequests = new byte[Depth * (RequestHeader.Size + BlockSize)];
        _readRequests = new byte[Depth * RequestHeader.Size];
        for (int i = 0; i < Depth; i++)
        {
            new RequestHeader(NbdMagic.Request, 0, CommandType.Write, (ulong)i, (ulong)(i * BlockSize), BlockSize)
                .Write(_writeRequests.AsSpan(i * (RequestHeader.Size + BlockSize)));
            new RequestHeader(NbdMagic.Request, 0, CommandType.Read, (ulong)i, (ulong)(i * BlockSize), BlockSize)
                .Write(_readRequests.AsSpan(i * RequestHeader.Size));
        }

        _replies = new byte[Depth * (StructuredReply.OffsetDataPrefixSize + BlockSize)];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _client?.Dispose();
        _serving?.Wait(TimeSpan.FromSeconds(5));
        _server?.DisposeAsync().AsTask().Wait();
    }

    [Benchmark]
    public void Write4K() => RoundTrip(_writeRequests.AsSpan(0, RequestHeader.Size + BlockSize), WriteReplySize);

    [Benchmark]
    public void Read4K() => RoundTrip(_readRequests.AsSpan(0, RequestHeader.Size), ReadReplySize);

    [Benchmark(OperationsPerInvoke = Depth)]
    public void Write4KDepth32() => RoundTrip(_writeRequests, Depth * WriteReplySize);

    [Benchmark(OperationsPerInvoke = Depth)]
    public void Read4KDepth32() => RoundTrip(_readRequests, Depth * ReadReplySize);

    private int WriteReplySize => Structured ? StructuredReply.HeaderSize : SimpleReply.Size;

    private int ReadReplySize => (Structured ? StructuredReply.OffsetDataPrefixSize : SimpleReply.Size) + BlockSize;

    private void RoundTrip(ReadOnlySpan<byte> requests, int replyBytes)
    {
        Socket client = _client!;
        while (requests.Length > 0)
        {
            requests = requests[client.Send(requests)..];
        }

        Span<byte> replies = _replies.AsSpan(0, replyBytes);
        while (replies.Length > 0)
        {
            replies = replies[client.Receive(replies)..];
        }
    }

    /// <summary>Client flags, optionally STRUCTURED_REPLY, then GO for the default export; reads replies to ACK.</summary>
    private static void Handshake(Socket socket, bool structured)
    {
        var buffer = new byte[4096];
        Receive(socket, buffer.AsSpan(0, ServerGreeting.Length));
        BinaryPrimitives.WriteUInt32BigEndian(buffer, (uint)(ClientFlags.FixedNewstyle | ClientFlags.NoZeroes));
        socket.Send(buffer.AsSpan(0, 4));
        if (structured)
        {
            SendOption(socket, OptionType.StructuredReply, []);
            ReadUntilAck(socket);
        }

        SendOption(socket, OptionType.Go, [0, 0, 0, 0, 0, 0]);
        ReadUntilAck(socket);
    }

    private static void SendOption(Socket socket, OptionType option, byte[] payload)
    {
        var bytes = new byte[16 + payload.Length];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, NbdMagic.IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(8), (uint)option);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(12), (uint)payload.Length);
        payload.CopyTo(bytes, 16);
        socket.Send(bytes);
    }

    private static void ReadUntilAck(Socket socket)
    {
        var header = new byte[OptionReply.HeaderSize];
        while (true)
        {
            Receive(socket, header);
            var type = (OptionReplyType)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            Receive(socket, new byte[BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16))]);
            if (type == OptionReplyType.Ack)
            {
                return;
            }

            if (type != OptionReplyType.Info)
            {
                throw new InvalidOperationException("handshake failed: " + type);
            }
        }
    }

    private static void Receive(Socket socket, Span<byte> destination)
    {
        while (destination.Length > 0)
        {
            int n = socket.Receive(destination);
            if (n == 0)
            {
                throw new EndOfStreamException();
            }

            destination = destination[n..];
        }
    }
}
