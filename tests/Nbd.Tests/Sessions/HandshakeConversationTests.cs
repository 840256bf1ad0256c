using System.Buffers.Binary;
using System.Text;
using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Tests.Interop;

namespace Nbd.Tests.Sessions;

/// <summary>Option haggling byte by byte: what nbd-client 3.24 sends, and what no well-behaved client sends.</summary>
public class HandshakeConversationTests
{
    /// <summary>An option's data: a u32 name length, the name, then <paramref name="tail"/>.</summary>
    internal static byte[] NamePayload(string name, params byte[] tail)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(name);
        var payload = new byte[4 + bytes.Length + tail.Length];
        BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)bytes.Length);
        bytes.CopyTo(payload, 4);
        tail.CopyTo(payload, 4 + bytes.Length);
        return payload;
    }

    [Fact]
    public async Task Nbd_client_style_GO_without_info_requests_gets_export_and_block_size_then_simple_replies()
    {
        await using var server = new TestServer();
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        Assert.Equal(HandshakeFlags.FixedNewstyle | HandshakeFlags.NoZeroes, await client.StartAsync());

        var (flags, final, replies) = await client.GoAsync("mem");

        Assert.Equal(OptionReplyType.Ack, final);
        Assert.Equal(
            TransmissionFlags.HasFlags | TransmissionFlags.SendFlush | TransmissionFlags.SendFua | TransmissionFlags.SendTrim
            | TransmissionFlags.SendWriteZeroes | TransmissionFlags.CanMultiConn | TransmissionFlags.SendCache | TransmissionFlags.SendFastZero,
            flags); // no SEND_DF: structured replies were not negotiated
        Assert.Equal(3, replies.Count);
        Assert.Equal("0003" + "00000001" + "00001000" + "02000000", Convert.ToHexString(replies[1].Payload));
        Assert.Equal(16L << 20, (long)BinaryPrimitives.ReadUInt64BigEndian(replies[0].Payload.AsSpan(2)));

        server.Device().Write(4096, Enumerable.Repeat((byte)0x33, 512).ToArray(), fua: false);
        await client.SendRequestAsync(CommandType.Read, 77, 4096, 512);
        var reply = await client.ReadSimpleReplyAsync(512);
        Assert.Equal(NbdError.None, reply!.Value.Error);
        Assert.Equal(77UL, reply.Value.Handle);
        Assert.All(reply.Value.Data, b => Assert.Equal(0x33, b));
    }

    [Theory]
    [InlineData(ClientFlags.FixedNewstyle | ClientFlags.NoZeroes, 10)]
    [InlineData(ClientFlags.FixedNewstyle, 134)]
    public async Task Export_name_reply_has_the_padding_unless_no_zeroes(ClientFlags clientFlags, int replyLength)
    {
        await using var server = new TestServer();
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync(clientFlags);
        await client.SendOptionAsync((uint)OptionType.ExportName, "mem"u8);

        byte[]? reply = await client.ReadExactAsync(replyLength);
        Assert.NotNull(reply);
        Assert.Equal(16L << 20, (long)BinaryPrimitives.ReadUInt64BigEndian(reply));
        Assert.All(reply[10..], b => Assert.Equal(0, b));

        // The next bytes are replies to requests: nothing else was sent.
        await client.SendRequestAsync(CommandType.Flush, 5, 0, 0);
        var flush = (await client.ReadSimpleReplyAsync())!.Value;
        Assert.Equal((NbdError.None, 5UL), (flush.Error, flush.Handle));
    }

    [Fact]
    public async Task Unknown_and_malformed_options_get_error_replies_and_haggling_goes_on()
    {
        await using var server = new TestServer();
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync();

        async Task ExpectAsync(uint option, OptionReplyType type)
        {
            var reply = await client.ReadOptionReplyAsync();
            Assert.NotNull(reply);
            Assert.Equal((option, type), (reply.Option, reply.Type));
        }

        await client.SendOptionAsync(99, "junk"u8);
        await ExpectAsync(99, OptionReplyType.ErrUnsupported);
        await client.SendOptionAsync((uint)OptionType.List, "x"u8);
        await ExpectAsync((uint)OptionType.List, OptionReplyType.ErrInvalid);
        await client.SendOptionAsync((uint)OptionType.StartTls, []);
        await ExpectAsync((uint)OptionType.StartTls, OptionReplyType.ErrUnsupported);
        await client.SendOptionAsync((uint)OptionType.SetMetaContext, NamePayload("mem", 0, 0, 0, 0));
        await ExpectAsync((uint)OptionType.SetMetaContext, OptionReplyType.ErrInvalid); // before STRUCTURED_REPLY
        await client.SendOptionAsync((uint)OptionType.StructuredReply, "x"u8);
        await ExpectAsync((uint)OptionType.StructuredReply, OptionReplyType.ErrInvalid);
        await client.SendOptionAsync((uint)OptionType.StructuredReply, []);
        await ExpectAsync((uint)OptionType.StructuredReply, OptionReplyType.Ack);
        await client.SendOptionAsync((uint)OptionType.StructuredReply, []);
        await ExpectAsync((uint)OptionType.StructuredReply, OptionReplyType.ErrInvalid);

        // INFO: a name over 4096 bytes, a count that does not add up, an unknown export, invalid UTF-8.
        await client.SendOptionAsync((uint)OptionType.Info, NamePayload(new string('a', 5000), 0, 0));
        await ExpectAsync((uint)OptionType.Info, OptionReplyType.ErrTooBig);
        await client.SendOptionAsync((uint)OptionType.Info, NamePayload("mem", 0, 2, 0));
        await ExpectAsync((uint)OptionType.Info, OptionReplyType.ErrInvalid);
        await client.SendOptionAsync((uint)OptionType.Info, NamePayload("nope", 0, 0));
        await ExpectAsync((uint)OptionType.Info, OptionReplyType.ErrUnknown);
        byte[] badUtf8 = [0, 0, 0, 2, 0xC3, 0x28, 0, 0];
        await client.SendOptionAsync((uint)OptionType.Info, badUtf8);
        await ExpectAsync((uint)OptionType.Info, OptionReplyType.ErrInvalid);

        // A name length pointing past the payload.
        byte[] lying = [0, 0, 0x10, 0, (byte)'m', 0, 0];
        await client.SendOptionAsync((uint)OptionType.Go, lying);
        await ExpectAsync((uint)OptionType.Go, OptionReplyType.ErrInvalid);

        // An option payload over the 64 KiB the server parses is skipped and refused.
        await client.SendOptionAsync((uint)OptionType.Info, new byte[100_000], 100_000);
        await ExpectAsync((uint)OptionType.Info, OptionReplyType.ErrTooBig);

        // One the server does not implement, however large (under the skip limit), is unsupported (proto.md's baseline).
        await client.SendOptionAsync(99, new byte[70_000], 70_000);
        await ExpectAsync(99, OptionReplyType.ErrUnsupported);

        // SET_META_CONTEXT: a query for something else selects nothing; base:allocation gets an id.
        await client.SendOptionAsync((uint)OptionType.SetMetaContext, NamePayload("mem", [0, 0, 0, 1, 0, 0, 0, 8, .. "x-a:junk"u8]));
        await ExpectAsync((uint)OptionType.SetMetaContext, OptionReplyType.Ack);
        await client.SendOptionAsync((uint)OptionType.SetMetaContext, NamePayload("mem", [0, 0, 0, 1, 0, 0, 0, 15, .. "base:allocation"u8]));
        var context = await client.ReadOptionReplyAsync();
        Assert.Equal(OptionReplyType.MetaContext, context!.Type);
        Assert.Equal("base:allocation", Encoding.UTF8.GetString(context.Payload, 4, context.Payload.Length - 4));
        await ExpectAsync((uint)OptionType.SetMetaContext, OptionReplyType.Ack);
        await client.SendOptionAsync((uint)OptionType.SetMetaContext, NamePayload("mem", [0, 0, 0, 2, 0, 0, 0, 15, .. "base:allocation"u8]));
        await ExpectAsync((uint)OptionType.SetMetaContext, OptionReplyType.ErrInvalid); // says 2 queries, has 1

        // After all that, GO still works and includes SEND_DF.
        var (flags, final, _) = await client.GoAsync("mem", (ushort)InfoType.BlockSize);
        Assert.Equal(OptionReplyType.Ack, final);
        Assert.True(flags.HasFlag(TransmissionFlags.SendDf));
    }

    [Fact]
    public async Task Abort_is_acknowledged_and_the_connection_closed()
    {
        await using var server = new TestServer();
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync();
        await client.SendOptionAsync((uint)OptionType.Abort, []);
        var reply = await client.ReadOptionReplyAsync();
        Assert.Equal(OptionReplyType.Ack, reply!.Type);
        Assert.True(await client.IsClosedByServerAsync());
    }

    public static TheoryData<string> Fatal => ["client-flags", "option-magic", "huge-option", "export-name-unknown", "export-name-too-long"];

    [Theory]
    [MemberData(nameof(Fatal))]
    public async Task What_cannot_be_answered_closes_only_that_connection(string what)
    {
        await using var server = new TestServer();
        using RawClient other = await RawClient.ConnectAsync(server.SocketPath);
        await other.StartAsync();

        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync(what == "client-flags" ? (ClientFlags)0x81 : ClientFlags.FixedNewstyle);
        switch (what)
        {
            case "option-magic":
                await client.SendAsync(Convert.FromHexString("49484156454F5055" + "00000003" + "00000000"));
                break;
            case "huge-option":
                await client.SendOptionAsync((uint)OptionType.Info, [], 1u << 30);
                break;
            case "export-name-unknown":
                await client.SendOptionAsync((uint)OptionType.ExportName, "nope"u8);
                break;
            case "export-name-too-long":
                await client.SendOptionAsync((uint)OptionType.ExportName, new byte[5000]);
                break;
            default:
                break;
        }

        Assert.True(await client.IsClosedByServerAsync());

        // The other connection is still haggling happily.
        var (_, final, _) = await other.GoAsync("mem");
        Assert.Equal(OptionReplyType.Ack, final);
    }

    [Fact]
    public async Task Tls_required_refuses_options_before_starttls_and_drops_export_name()
    {
        using var certificate = SelfSigned();
        await using var server = new TestServer(new NbdServerOptions { TlsMode = NbdTlsMode.Required, TlsCertificate = certificate });
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync();
        foreach (OptionType option in new[] { OptionType.List, OptionType.StructuredReply, OptionType.Info })
        {
            await client.SendOptionAsync((uint)option, option == OptionType.Info ? NamePayload("mem", 0, 0) : []);
            Assert.Equal(OptionReplyType.ErrTlsRequired, (await client.ReadOptionReplyAsync())!.Type);
        }

        await client.SendOptionAsync((uint)OptionType.ExportName, "mem"u8);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task A_client_is_counted_before_GO_is_acknowledged_and_a_claimed_export_admits_no_one()
    {
        await using var server = new TestServer();
        Assert.True(server.Server.TryClaimExport("mem", out int connections));
        Assert.Equal(0, connections);
        Assert.False(server.Server.TryClaimExport("mem", out _)); // one claim at a time

        // Claimed: GO is refused and haggling goes on; EXPORT_NAME, which has no error reply, drops the connection.
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync();
        var (_, refused, replies) = await client.GoAsync("mem");
        Assert.Equal(OptionReplyType.ErrUnknown, refused);
        Assert.Single(replies); // no INFO before the error
        using (RawClient old = await RawClient.ConnectAsync(server.SocketPath))
        {
            await old.StartAsync();
            await old.SendOptionAsync((uint)OptionType.ExportName, "mem"u8);
            Assert.True(await old.IsClosedByServerAsync());
        }

        Assert.Equal(0, server.Server.GetConnectionCount("mem"));
        server.Server.ReleaseClaim("mem");

        // Counted before the ACK is sent, so no wait: whoever asks once the client is attached sees it.
        Assert.Equal(OptionReplyType.Ack, (await client.GoAsync("mem")).Final);
        Assert.Equal(1, server.Server.GetConnectionCount("mem"));
        Assert.False(server.Server.TryClaimExport("mem", out connections));
        Assert.Equal(1, connections);

        await client.SendRequestAsync(CommandType.Disconnect, 1, 0, 0);
        Assert.True(await client.IsClosedByServerAsync());
        Assert.True(await Poll.UntilAsync(() => server.Server.GetConnectionCount("mem") == 0), "the closed connection stayed counted");
        Assert.True(server.Server.TryClaimExport("mem", out connections));
        Assert.Equal(0, connections);
    }

    internal static System.Security.Cryptography.X509Certificates.X509Certificate2 SelfSigned()
    {
        using var key = System.Security.Cryptography.RSA.Create(2048);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest(
            "CN=localhost", key, System.Security.Cryptography.HashAlgorithmName.SHA256, System.Security.Cryptography.RSASignaturePadding.Pkcs1);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        return System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadPkcs12(
            certificate.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pkcs12), null);
    }
}
