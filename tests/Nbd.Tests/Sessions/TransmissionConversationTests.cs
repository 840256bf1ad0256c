using System.Buffers.Binary;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Tests.Devices;
using Nbd.Tests.Interop;

namespace Nbd.Tests.Sessions;

/// <summary>Requests byte by byte: refused requests keep the stream in step, DISC and shutdown behave as specified.</summary>
public class TransmissionConversationTests
{
    [Fact]
    public async Task A_refused_write_has_its_payload_skipped_and_the_next_request_is_served()
    {
        await using var server = new TestServer();
        using RawClient client = await server.ConnectRawAsync();
        byte[] payload = Enumerable.Repeat((byte)0x44, 4096).ToArray();

        await client.SendRequestAsync(CommandType.Write, 1, 0, 4096, CommandFlags.DontFragment, payload); // DF on a write
        await client.SendRequestAsync(CommandType.Write, 2, 16 << 20, 4096, 0, payload);                   // past the end
        await client.SendRequestAsync(CommandType.Write, 3, 0, 4096, (CommandFlags)0x100, payload);        // unknown flag
        await client.SendRequestAsync(CommandType.Write, 4, 8192, 4096, 0, payload);                       // fine
        await client.SendRequestAsync((CommandType)42, 5, 0, 0);                                            // unknown command
        await client.SendRequestAsync(CommandType.BlockStatus, 6, 0, 4096);                                // no meta context
        await client.SendRequestAsync(CommandType.Flush, 7, 1, 0);                                          // flush with an offset

        // Replies come in completion order (the spec allows any), so they are collected by handle; none carries
        // data. Had a refused payload not been skipped, its 0x44 bytes would be taken for the next request
        // header and the connection dropped for a bad magic.
        var errors = new Dictionary<ulong, NbdError>();
        for (int i = 0; i < 7; i++)
        {
            var reply = (await client.ReadSimpleReplyAsync())!.Value;
            Assert.True(errors.TryAdd(reply.Handle, reply.Error), $"handle {reply.Handle} answered twice");
        }

        Assert.Equal(NbdError.Invalid, errors[1]);
        Assert.Equal(NbdError.NoSpace, errors[2]);
        Assert.Equal(NbdError.Invalid, errors[3]);
        Assert.Equal(NbdError.None, errors[4]);
        Assert.Equal(NbdError.Invalid, errors[5]);
        Assert.Equal(NbdError.Invalid, errors[6]);
        Assert.Equal(NbdError.Invalid, errors[7]);

        // Sent only now, after the write's reply: sent with the others, the read may run before the write, and its
        // reply (with data) may come before the refusals, which is what failed 3 runs in 5.
        await client.SendRequestAsync(CommandType.Read, 8, 8192, 4096);
        var read = (await client.ReadSimpleReplyAsync(4096))!.Value;
        Assert.Equal((NbdError.None, 8UL), (read.Error, read.Handle));
        Assert.Equal(payload, read.Data);
        Assert.Equal(new byte[4096], ReadDevice(server.Device(), 0, 4096)); // refused writes never reached the device
    }

    private static byte[] ReadDevice(IBlockDevice device, long offset, int length)
    {
        var buffer = new byte[length];
        Assert.Equal(NbdError.None, device.Read(offset, buffer));
        return buffer;
    }

    [Fact]
    public async Task With_structured_replies_a_success_without_payload_is_a_simple_reply_and_errors_and_reads_are_structured()
    {
        await using var server = new TestServer();
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync();
        await client.SendOptionAsync((uint)OptionType.StructuredReply, []);
        Assert.Equal(OptionReplyType.Ack, (await client.ReadOptionReplyAsync())!.Type);
        Assert.Equal(OptionReplyType.Ack, (await client.GoAsync("mem")).Final);
        byte[] payload = Enumerable.Repeat((byte)0x5A, 4096).ToArray();

        // One request at a time, so the replies come in this order. libnbd reads 16 bytes first: a structured
        // header for a bare success would cost it a second recv per request.
        await client.SendRequestAsync(CommandType.Write, 1, 0, 4096, 0, payload);
        Assert.Equal((NbdError.None, 1UL), Simple((await client.ReadSimpleReplyAsync())!.Value));
        await client.SendRequestAsync(CommandType.Flush, 2, 0, 0);
        Assert.Equal((NbdError.None, 2UL), Simple((await client.ReadSimpleReplyAsync())!.Value));
        await client.SendRequestAsync(CommandType.Trim, 3, 8192, 4096);
        Assert.Equal((NbdError.None, 3UL), Simple((await client.ReadSimpleReplyAsync())!.Value));

        // An error keeps its message: an ERROR chunk with DONE.
        await client.SendRequestAsync(CommandType.Write, 4, 16 << 20, 4096, 0, payload);
        byte[] error = (await client.ReadExactAsync(StructuredReply.HeaderSize))!;
        Assert.Equal(NbdMagic.StructuredReply, BinaryPrimitives.ReadUInt32BigEndian(error));
        Assert.Equal((ushort)StructuredReplyFlags.Done, BinaryPrimitives.ReadUInt16BigEndian(error.AsSpan(4)));
        Assert.Equal((ushort)StructuredReplyType.Error, BinaryPrimitives.ReadUInt16BigEndian(error.AsSpan(6)));
        Assert.Equal(4UL, BinaryPrimitives.ReadUInt64BigEndian(error.AsSpan(8)));
        byte[] body = (await client.ReadExactAsync((int)BinaryPrimitives.ReadUInt32BigEndian(error.AsSpan(16))))!;
        Assert.Equal((uint)NbdError.NoSpace, BinaryPrimitives.ReadUInt32BigEndian(body));
        Assert.True(BinaryPrimitives.ReadUInt16BigEndian(body.AsSpan(4)) > 0, "the error carries no message");

        // A read must be structured once negotiated: OFFSET_DATA with DONE, then the data written above.
        await client.SendRequestAsync(CommandType.Read, 5, 0, 4096);
        byte[] read = (await client.ReadExactAsync(StructuredReply.OffsetDataPrefixSize))!;
        Assert.Equal(NbdMagic.StructuredReply, BinaryPrimitives.ReadUInt32BigEndian(read));
        Assert.Equal((ushort)StructuredReplyType.OffsetData, BinaryPrimitives.ReadUInt16BigEndian(read.AsSpan(6)));
        Assert.Equal(5UL, BinaryPrimitives.ReadUInt64BigEndian(read.AsSpan(8)));
        Assert.Equal(payload, await client.ReadExactAsync(4096));

        static (NbdError, ulong) Simple((NbdError Error, ulong Handle, byte[] Data) reply) => (reply.Error, reply.Handle);
    }

    /// <summary>
    /// proto.md: without block sizes asked for, the minimum block size is 1, and a server SHOULD support it. A device
    /// that takes any alignment serves a 3-byte write at offset 1 to a client whose GO did not ask for
    /// NBD_INFO_BLOCK_SIZE (and to an EXPORT_NAME client), while one that asked is held to the 512 it was sent, as
    /// is every client of a device that needs whole blocks. The GO that did not ask is told a minimum of 1 (as
    /// qemu-nbd tells it), not the 512 it is not held to: the server's replies to it are not whole 512-byte blocks,
    /// and proto.md wants block status descriptors a multiple of "any advertised minimum block size". INFO, which
    /// binds nobody, tells the device's.
    /// </summary>
    [Theory]
    [InlineData(true, false, false, NbdError.None)]
    [InlineData(true, false, true, NbdError.None)]
    [InlineData(true, true, false, NbdError.Invalid)]
    [InlineData(false, false, false, NbdError.Invalid)]
    [InlineData(false, false, true, NbdError.Invalid)]
    public async Task Unaligned_requests_are_served_to_clients_that_did_not_ask_for_block_sizes(bool anyAlignment, bool askBlockSizes, bool exportName, NbdError expected)
    {
        var device = new MemoryBlockDevice(1 << 20, minimumBlockSize: 512, acceptsAnyAlignment: anyAlignment);
        await using var server = new TestServer(null, new NbdExport("mem", "512-byte blocks", device));
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync();
        if (exportName)
        {
            await client.SendOptionAsync((uint)OptionType.ExportName, "mem"u8);
            Assert.NotNull(await client.ReadExactAsync(8 + 2));
        }
        else
        {
            var (_, infoFinal, infoReplies) = await client.InfoOrGoAsync(OptionType.Info, "mem");
            Assert.Equal(OptionReplyType.Ack, infoFinal);
            Assert.Equal(anyAlignment ? 1u : 512u, MinimumSent(infoReplies)); // what the GO below gets when it asks alike
            var (_, final, replies) = askBlockSizes ? await client.GoAsync("mem", (ushort)InfoType.BlockSize) : await client.GoAsync("mem");
            Assert.Equal(OptionReplyType.Ack, final);
            Assert.Equal(anyAlignment && !askBlockSizes ? 1u : 512u, MinimumSent(replies));
        }

        await client.SendRequestAsync(CommandType.Write, 1, 1, 3, 0, [7, 8, 9]);
        Assert.Equal(expected, (await client.ReadSimpleReplyAsync())!.Value.Error);
        await client.SendRequestAsync(CommandType.Read, 2, 0, 5);
        var read = (await client.ReadSimpleReplyAsync(expected == NbdError.None ? 5 : 0))!.Value;
        Assert.Equal(expected, read.Error);
        if (expected == NbdError.None)
        {
            Assert.Equal(new byte[] { 0, 7, 8, 9, 0 }, read.Data);
            await client.SendRequestAsync(CommandType.Trim, 3, 2, 1);
            Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync())!.Value.Error);
            await client.SendRequestAsync(CommandType.Read, 4, 1, 3);
            Assert.Equal(new byte[] { 7, 0, 9 }, (await client.ReadSimpleReplyAsync(3))!.Value.Data);
        }

        static uint MinimumSent(List<RawClient.OptionReplyMessage> replies) => BinaryPrimitives.ReadUInt32BigEndian(Assert.Single(replies,
            r => r.Type == OptionReplyType.Info && BinaryPrimitives.ReadUInt16BigEndian(r.Payload) == (ushort)InfoType.BlockSize).Payload.AsSpan(2));
    }

    [Fact]
    public async Task Oversized_write_gets_EINVAL_and_the_connection_goes_on()
    {
        await using var server = new TestServer(new NbdServerOptions { MaxPayload = 64 << 10 });
        using RawClient client = await server.ConnectRawAsync();
        await client.SendRequestAsync(CommandType.Write, 1, 0, 128 << 10, 0, new byte[128 << 10]);
        Assert.Equal(NbdError.Invalid, (await client.ReadSimpleReplyAsync())!.Value.Error);
        await client.SendRequestAsync(CommandType.Read, 2, 0, 128 << 10);
        Assert.Equal(NbdError.Invalid, (await client.ReadSimpleReplyAsync())!.Value.Error);
        await client.SendRequestAsync(CommandType.Read, 3, 0, 64 << 10);
        Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync(64 << 10))!.Value.Error);
    }

    [Fact]
    public async Task Disconnect_finishes_outstanding_requests_then_closes_and_ignores_what_follows()
    {
        var gated = new GatedDevice(new MemoryBlockDevice(1 << 20));
        await using var server = new TestServer(null, new NbdExport("mem", "gated", gated));
        using RawClient client = await server.ConnectRawAsync();

        await client.SendRequestAsync(CommandType.Read, 1, 0, 4096);
        await client.SendRequestAsync(CommandType.Disconnect, 2, 0, 0);
        await client.SendRequestAsync(CommandType.Read, 3, 0, 4096); // a client must not do this; it is ignored
        await gated.WaitUntilWaitingAsync(1);
        gated.Open();

        var reply = (await client.ReadSimpleReplyAsync(4096))!.Value;
        Assert.Equal((NbdError.None, 1UL), (reply.Error, reply.Handle));
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task Stop_answers_new_requests_with_ESHUTDOWN_and_finishes_those_in_flight()
    {
        var gated = new GatedDevice(new MemoryBlockDevice(1 << 20));
        await using var server = new TestServer(null, new NbdExport("mem", "gated", gated));
        using RawClient client = await server.ConnectRawAsync();

        // Counted before the handshake's last reply is sent.
        Assert.Equal(1, server.Server.GetConnectionCount("mem"));

        await client.SendRequestAsync(CommandType.Read, 1, 0, 4096);
        await gated.WaitUntilWaitingAsync(1);
        Task stopping = server.Server.StopAsync(TimeSpan.FromSeconds(20));
        await client.SendRequestAsync(CommandType.Write, 2, 0, 512, 0, new byte[512]);
        var refused = (await client.ReadSimpleReplyAsync())!.Value;
        Assert.Equal((NbdError.Shutdown, 2UL), (refused.Error, refused.Handle));

        gated.Open();
        var reply = (await client.ReadSimpleReplyAsync(4096))!.Value;
        Assert.Equal((NbdError.None, 1UL), (reply.Error, reply.Handle));
        await stopping;
        Assert.True(await client.IsClosedByServerAsync());
        // StopAsync returns once every session has ended.
        Assert.Equal(0, server.Server.ConnectionCount);
        Assert.Equal(0, server.Server.GetConnectionCount("mem"));
    }

    /// <summary>
    /// A device call that outlasts the grace: the connection is aborted, but StopAsync returns only once the call has
    /// ended, since its owner frees the device next. It used to return 5 s after the abort whatever ran (the daemon
    /// then freed a pool that 32 MiB writes at zstd:22 were still compressing into: SIGSEGV at stop).
    /// </summary>
    [Fact]
    public async Task Stop_returns_only_after_a_device_call_that_outlasts_the_grace_has_ended()
    {
        var gated = new GatedDevice(new MemoryBlockDevice(1 << 20));
        await using var server = new TestServer(null, new NbdExport("mem", "gated", gated));
        using RawClient client = await server.ConnectRawAsync();
        await client.SendRequestAsync(CommandType.Read, 1, 0, 4096);
        await gated.WaitUntilWaitingAsync(1);

        Task stopping = server.Server.StopAsync(TimeSpan.FromMilliseconds(100));
        await Task.Delay(TimeSpan.FromSeconds(6)); // past the grace and the 5 s StopAsync used to give the connections
        Assert.False(stopping.IsCompleted, "StopAsync returned while a device call was still running");
        Assert.Equal(1, gated.Waiting);

        gated.Open();
        await stopping.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, server.Server.ConnectionCount);
    }

    [Fact]
    public async Task Already_connected_socket_with_simple_replies_only_refuses_structured_replies()
    {
        await using var server = new NbdServer(new NbdServerOptions(), NullLoggerFactory.Instance);
        server.AddExport(new NbdExport("kernel", "for the kernel", new MemoryBlockDevice(1 << 20)));
        var pair = SocketPair();
        Task serving = server.ServeConnectionAsync(pair.Server, simpleRepliesOnly: true, CancellationToken.None);
        using RawClient client = RawClient.Wrap(pair.Client);
        await client.StartAsync();

        await client.SendOptionAsync((uint)OptionType.StructuredReply, []);
        Assert.Equal(OptionReplyType.ErrUnsupported, (await client.ReadOptionReplyAsync())!.Type);
        var (flags, final, _) = await client.GoAsync("");
        Assert.Equal(OptionReplyType.Ack, final);
        Assert.False(flags.HasFlag(TransmissionFlags.SendDf));
        Assert.Equal(1, server.GetConnectionCount("kernel"));

        await client.SendRequestAsync(CommandType.Write, 9, 512, 512, CommandFlags.Fua, Enumerable.Repeat((byte)1, 512).ToArray());
        var written = (await client.ReadSimpleReplyAsync())!.Value;
        Assert.Equal((NbdError.None, 9UL), (written.Error, written.Handle));
        await client.SendRequestAsync(CommandType.Disconnect, 10, 0, 0);
        await serving.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, server.GetConnectionCount("kernel"));
    }

    /// <summary>
    /// max-connections bounds what the listeners accept. A socket the owner hands over (the daemon attaching its own
    /// export to /dev/nbdN) used to count against it too, so clients of the socket holding every slot (up to the
    /// handshake timeout each) kept the kernel device from being attached.
    /// </summary>
    [Fact]
    public async Task An_already_connected_socket_is_served_when_the_listeners_are_at_max_connections()
    {
        await using var server = new TestServer(new NbdServerOptions { MaxConnections = 1 });
        using RawClient holder = await server.ConnectRawAsync(); // the one slot, in transmission
        using RawClient refused = await RawClient.ConnectAsync(server.SocketPath);
        Assert.True(await refused.IsClosedByServerAsync(), "a listener's connection past max-connections was served");

        var pair = SocketPair();
        Task serving = server.Server.ServeConnectionAsync(pair.Server, simpleRepliesOnly: true, CancellationToken.None);
        using RawClient client = RawClient.Wrap(pair.Client);
        await client.StartAsync();
        Assert.Equal(OptionReplyType.Ack, (await client.GoAsync("mem")).Final);
        await client.SendRequestAsync(CommandType.Write, 1, 0, 512, 0, Enumerable.Repeat((byte)7, 512).ToArray());
        var written = (await client.ReadSimpleReplyAsync())!.Value;
        Assert.Equal((NbdError.None, 1UL), (written.Error, written.Handle));
        await client.SendRequestAsync(CommandType.Disconnect, 2, 0, 0);
        await serving.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Cancelling_an_already_connected_socket_disconnects_it()
    {
        await using var server = new NbdServer(new NbdServerOptions(), NullLoggerFactory.Instance);
        server.AddExport(new NbdExport("kernel", "for the kernel", new MemoryBlockDevice(1 << 20)));
        var pair = SocketPair();
        using var cancel = new CancellationTokenSource();
        Task serving = server.ServeConnectionAsync(pair.Server, simpleRepliesOnly: true, cancel.Token);
        using RawClient client = RawClient.Wrap(pair.Client);
        await client.StartAsync();
        await client.GoAsync("kernel");
        await cancel.CancelAsync();
        await serving.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task Connections_over_the_limit_are_closed_at_once()
    {
        await using var server = new TestServer(new NbdServerOptions { MaxConnections = 1 });
        using RawClient first = await server.ConnectRawAsync();
        using RawClient second = await RawClient.ConnectAsync(server.SocketPath);
        Assert.Null(await second.ReadExactAsync(ServerGreeting.Length));
        await first.SendRequestAsync(CommandType.Flush, 1, 0, 0);
        Assert.Equal(NbdError.None, (await first.ReadSimpleReplyAsync())!.Value.Error);
    }

    [Fact]
    public async Task In_flight_requests_are_bounded_per_connection()
    {
        var gated = new GatedDevice(new MemoryBlockDevice(1 << 20));
        await using var server = new TestServer(new NbdServerOptions { MaxInFlightPerConnection = 4 }, new NbdExport("mem", "gated", gated));
        using RawClient client = await server.ConnectRawAsync();

        for (ulong i = 0; i < 10; i++)
        {
            await client.SendRequestAsync(CommandType.Read, i, i * 4096, 4096);
        }

        await gated.WaitUntilWaitingAsync(4);
        await Task.Delay(200);
        Assert.Equal(4, gated.Waiting); // the other six wait unread in the socket

        gated.Open();
        var handles = new HashSet<ulong>();
        for (int i = 0; i < 10; i++)
        {
            var reply = (await client.ReadSimpleReplyAsync(4096))!.Value;
            Assert.Equal(NbdError.None, reply.Error);
            handles.Add(reply.Handle);
        }

        Assert.Equal(10, handles.Count);
    }

    [Fact]
    public async Task A_client_that_never_finishes_the_handshake_is_dropped_after_the_timeout()
    {
        await using var server = new TestServer(new NbdServerOptions { HandshakeTimeout = TimeSpan.FromMilliseconds(300) });
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        try
        {
            await client.StartAsync();
        }
        catch (SocketException)
        {
            // Already dropped: on a loaded machine the client may take longer than the timeout to send its flags.
        }

        Assert.True(await client.IsClosedByServerAsync());
    }

    internal static (Socket Server, Socket Client) SocketPair()
    {
        string path = Path.Combine(Path.GetTempPath(), "nbd-pair-" + Guid.NewGuid().ToString("N")[..12]);
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(path));
        Socket server = listener.Accept();
        File.Delete(path);
        return (server, client);
    }
}
