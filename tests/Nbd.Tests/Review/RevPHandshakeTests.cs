using System.Net.Sockets;
using Nbd.Protocol;
using Nbd.Tests.Interop;
using Nbd.Tests.Sessions;

namespace Nbd.Tests.Review;

/// <summary>
/// Review P: option haggling checked against doc/proto.md of NetworkBlockDevice/nbd (the MUST/SHOULD sentences
/// quoted above each test). Each test fails on the code as reviewed, for the reason given, and passes once the
/// server does what the sentence asks.
/// </summary>
public class RevPHandshakeTests
{
    private static async Task<RawClient> StructuredAsync(TestServer server)
    {
        RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync();
        await client.SendOptionAsync((uint)OptionType.StructuredReply, []);
        Assert.Equal(OptionReplyType.Ack, (await client.ReadOptionReplyAsync())!.Type);
        return client;
    }

    // doc/proto.md, NBD_OPT_LIST_META_CONTEXT: "If the option request is syntactically invalid (such as a query
    // length that would require reading beyond the original length given in the option header), the server MUST
    // fail the request with NBD_REP_ERR_INVALID."
    // NbdHandshake.TryReadString checks the 4096-byte string limit before it checks that the string fits in the
    // option, so a length field that both overruns the option and exceeds 4096 is answered NBD_REP_ERR_TOO_BIG.
    // ("query": the query's length field lies; "name": the export name's length field lies.)
    [Theory]
    [InlineData("query")]
    [InlineData("name")]
    public async Task List_meta_context_with_a_length_overrunning_the_option_gets_ERR_INVALID(string which)
    {
        await using var server = new TestServer();
        using RawClient client = await StructuredAsync(server);

        byte[] payload = which == "query"
            // name "mem", 1 query, whose length says 5000 bytes but only "base:allocation" (15) follows
            ? HandshakeConversationTests.NamePayload("mem", [0, 0, 0, 1, 0, 0, 0x13, 0x88, .. "base:allocation"u8])
            // name length says 5000 bytes, the option holds 3 bytes of name and an empty query list
            : [0, 0, 0x13, 0x88, .. "mem"u8, 0, 0, 0, 0];
        await client.SendOptionAsync((uint)OptionType.ListMetaContext, payload);

        RawClient.OptionReplyMessage reply = (await client.ReadOptionReplyAsync())!;
        Assert.Equal((uint)OptionType.ListMetaContext, reply.Option);
        Assert.Equal(OptionReplyType.ErrInvalid, reply.Type);

        // Haggling goes on.
        Assert.Equal(OptionReplyType.Ack, (await client.GoAsync("mem")).Final);
    }

    // doc/proto.md, NBD_OPT_ABORT: "The client desires to abort the negotiation and terminate the session. The
    // server MUST reply with NBD_REP_ACK. The client SHOULD NOT send any additional data with the option; however,
    // a server SHOULD ignore any data sent by the client rather than rejecting the request as invalid."
    // NbdHandshake.NegotiateAsync skips an option payload over 64 KiB and answers NBD_REP_ERR_TOO_BIG whatever the
    // option, so an ABORT carrying 64 KiB + 1 of data is refused and haggling goes on instead of ACK and close.
    [Fact]
    public async Task Abort_with_a_large_payload_is_still_acknowledged_and_closed()
    {
        await using var server = new TestServer();
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync();

        const int length = ProtocolLimits.MaxOptionLength + 1;
        await client.SendOptionAsync((uint)OptionType.Abort, new byte[length], length);

        RawClient.OptionReplyMessage? reply = await client.ReadOptionReplyAsync();
        Assert.NotNull(reply);
        Assert.Equal((uint)OptionType.Abort, reply.Option);
        Assert.Equal(OptionReplyType.Ack, reply.Type);
        Assert.True(await client.IsClosedByServerAsync());
    }

    // doc/proto.md, "Termination of the session during option haggling": "If the server is in the process of being
    // shut down it MAY error any inflight option and SHOULD error further options received (other than an
    // NBD_OPT_ABORT) with NBD_REP_ERR_SHUTDOWN." and "If the client receives NBD_REP_ERR_SHUTDOWN it MUST initiate
    // a soft disconnect." (The same section: "A party MUST NOT initiate a hard disconnect save where set out in this
    // section.")
    // NbdServer.StopAsync cancels _stopping, which every handshake's token is linked to; its registration shuts the
    // socket down at once (ServeConnection, onTimeout), so a client in option haggling gets a hard disconnect and
    // never sees NBD_REP_ERR_SHUTDOWN (the ERR_SHUTDOWN of NbdServer.Admit is reached only by a GO racing the stop).
    [Fact]
    public async Task An_option_sent_while_the_server_stops_gets_ERR_SHUTDOWN()
    {
        await using var server = new TestServer(new NbdServerOptions { HandshakeStopWindow = TimeSpan.FromSeconds(30) }); // the test plays the client: room for a loaded machine
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync();

        // Haggling is under way: LIST is answered (one SERVER, then ACK).
        await client.SendOptionAsync((uint)OptionType.List, []);
        Assert.Equal(OptionReplyType.Server, (await client.ReadOptionReplyAsync())!.Type);
        Assert.Equal(OptionReplyType.Ack, (await client.ReadOptionReplyAsync())!.Type);

        Task stopping = server.Server.StopAsync(TimeSpan.FromSeconds(30));
        RawClient.OptionReplyMessage? reply = null;
        try
        {
            await client.SendOptionAsync((uint)OptionType.Info, HandshakeConversationTests.NamePayload("mem", 0, 0));
            reply = await client.ReadOptionReplyAsync();
        }
        catch (SocketException)
        {
        }

        Assert.True(reply is not null, "the server dropped a client in option haggling instead of answering NBD_REP_ERR_SHUTDOWN");
        Assert.Equal((uint)OptionType.Info, reply.Option);
        Assert.Equal(OptionReplyType.ErrShutdown, reply.Type);

        // The client then soft-disconnects, as it must.
        await client.SendOptionAsync((uint)OptionType.Abort, []);
        await stopping.WaitAsync(TimeSpan.FromSeconds(60));
    }
}
