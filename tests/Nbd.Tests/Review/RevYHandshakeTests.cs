using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using Nbd.Protocol;
using Nbd.Tests.Interop;
using Nbd.Tests.Sessions;

namespace Nbd.Tests.Review;

/// <summary>
/// Review Y: option haggling as changed by 103b73d (string lengths checked before the 4096 limit; ERR_SHUTDOWN to
/// every option but ABORT once the server stops), against doc/proto.md of NetworkBlockDevice/nbd. Each test fails on
/// the code as reviewed, for the reason given, and passes once the server does what the quoted sentence asks.
/// </summary>
public class RevYHandshakeTests
{
    private static async Task<RawClient> StructuredAsync(TestServer server)
    {
        RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync();
        await client.SendOptionAsync((uint)OptionType.StructuredReply, []);
        Assert.Equal(OptionReplyType.Ack, (await client.ReadOptionReplyAsync())!.Type);
        return client;
    }

    // doc/proto.md, NBD_OPT_LIST_META_CONTEXT / SET_META_CONTEXT: data is "32 bits, length of export name; String,
    // name; 32 bits, number of queries; ..." and "If the option request is syntactically invalid (such as a query
    // length that would require reading beyond the original length given in the option header), the server MUST fail
    // the request with NBD_REP_ERR_INVALID." NBD_OPT_INFO / NBD_OPT_GO: "32 bits, length of name (unsigned); MUST be
    // no larger than the option data length - 6".
    // 103b73d made TryReadString answer ERR_INVALID before TOO_BIG only when the length runs past the *option's last
    // byte*; it does not know the fixed fields that must follow the string. A name length of 5000 that eats the option
    // to its end (no room for the query count, or for GO's info count) passes that check and is then answered
    // NBD_REP_ERR_TOO_BIG, although the option is syntactically invalid (the count is missing), exactly the case the
    // change meant to send to ERR_INVALID. Fix: NbdHandshake.TryReadString should take the bytes the caller needs
    // after the string (4 for META_CONTEXT names, 2 for INFO/GO names, 0 for queries) and check the overrun first.
    [Theory]
    [InlineData(OptionType.ListMetaContext)]
    [InlineData(OptionType.SetMetaContext)]
    [InlineData(OptionType.Go)]
    public async Task A_name_length_that_leaves_no_room_for_the_count_that_follows_gets_ERR_INVALID_not_TOO_BIG(OptionType option)
    {
        await using var server = new TestServer();
        using RawClient client = await StructuredAsync(server);

        // Name length 5000, then exactly 5000 bytes ('a'): the option ends where the count should begin.
        byte[] payload = new byte[4 + 5000];
        BinaryPrimitives.WriteUInt32BigEndian(payload, 5000);
        payload.AsSpan(4).Fill((byte)'a');
        await client.SendOptionAsync((uint)option, payload);

        RawClient.OptionReplyMessage reply = (await client.ReadOptionReplyAsync())!;
        Assert.Equal((uint)option, reply.Option);
        Assert.Equal(OptionReplyType.ErrInvalid, reply.Type);

        // Haggling goes on.
        Assert.Equal(OptionReplyType.Ack, (await client.GoAsync("mem")).Final);
    }

    // doc/proto.md, "Termination of the session during option haggling": "If the server is in the process of being
    // shut down it MAY error any inflight option and SHOULD error further options received (other than an
    // NBD_OPT_ABORT) with NBD_REP_ERR_SHUTDOWN." / "If the client receives NBD_REP_ERR_SHUTDOWN it MUST initiate a
    // soft disconnect." 103b73d's own claim: "NbdHandshake answers every option but ABORT with ERR_SHUTDOWN once
    // NbdServer.IsStopping".
    // NegotiateAsync checks IsStopping only after the <= 64 KiB branch: an option whose payload is over
    // ProtocolLimits.MaxOptionLength (but within MaxSkippedOptionLength) is skipped and answered NBD_REP_ERR_TOO_BIG
    // (or ERR_TLS_REQD before STARTTLS in FORCEDTLS), so a client sending it during the stop is told to shrink its
    // request and try again, not that the server is going away; it keeps haggling into StopAsync's hard cut.
    // Fix: in the skipped-option branch, answer ERR_SHUTDOWN when _server.IsStopping (before TOO_BIG / TLS_REQD).
    [Fact]
    public async Task A_large_option_sent_while_the_server_stops_gets_ERR_SHUTDOWN()
    {
        await using var server = new TestServer(new NbdServerOptions { HandshakeStopWindow = TimeSpan.FromSeconds(30) }); // the test plays the client: room for a loaded machine
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync();

        // Haggling is under way.
        await client.SendOptionAsync((uint)OptionType.List, []);
        Assert.Equal(OptionReplyType.Server, (await client.ReadOptionReplyAsync())!.Type);
        Assert.Equal(OptionReplyType.Ack, (await client.ReadOptionReplyAsync())!.Type);

        Task stopping = server.Server.StopAsync(TimeSpan.FromSeconds(30));
        Assert.True(server.Server.IsStopping);

        // An INFO whose payload is 64 KiB + 1 (a name, no info requests, padding the server would skip).
        const int length = ProtocolLimits.MaxOptionLength + 1;
        byte[] payload = new byte[length];
        await client.SendOptionAsync((uint)OptionType.Info, payload, length);
        RawClient.OptionReplyMessage? reply = await client.ReadOptionReplyAsync();

        Assert.NotNull(reply);
        Assert.Equal((uint)OptionType.Info, reply.Option);
        Assert.Equal(OptionReplyType.ErrShutdown, reply.Type);

        await client.SendOptionAsync((uint)OptionType.Abort, []);
        await stopping.WaitAsync(TimeSpan.FromSeconds(60));
    }
}
