using Nbd.Protocol;
using Nbd.Tests.Interop;
using Nbd.Tests.Sessions;

namespace Nbd.Tests.Review;

/// <summary>Review: the TLS rules of option haggling (doc/proto.md "TLS support", "Server-side requirements").</summary>
public class ReviewNbdTlsHandshakeTests
{
    /// <summary>
    /// doc/proto.md, "Server-side requirements": "The server MUST operate in NOTLS mode unless the server set flag
    /// NBD_FLAG_FIXED_NEWSTYLE and the client replied with NBD_FLAG_C_FIXED_NEWSTYLE in the fixed newstyle
    /// negotiation." and, "NOTLS mode": "If the server receives NBD_OPT_STARTTLS it MUST respond with
    /// NBD_REP_ERR_POLICY (...), NBD_REP_ERR_UNSUP (...) or another error explicitly permitted by this document."
    /// NbdHandshake.NegotiateAsync only looks at C_FIXED_NEWSTYLE in Required mode (it drops the client); in Optional
    /// mode StartTlsAsync checks only TlsMode == Off, so a client that did not reply C_FIXED_NEWSTYLE (the flag a MitM
    /// strips, per "Protocol downgrade attacks") gets NBD_REP_ACK and a TLS handshake.
    /// </summary>
    [Fact]
    public async Task Optional_mode_refuses_STARTTLS_from_a_client_without_C_FIXED_NEWSTYLE()
    {
        using var certificate = HandshakeConversationTests.SelfSigned();
        await using var server = new TestServer(new NbdServerOptions { TlsMode = NbdTlsMode.Optional, TlsCertificate = certificate });
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync(ClientFlags.None);

        await client.SendOptionAsync((uint)OptionType.StartTls, []);
        RawClient.OptionReplyMessage? reply = await client.ReadOptionReplyAsync();

        Assert.NotNull(reply);
        Assert.Equal((uint)OptionType.StartTls, reply.Option);
        Assert.True(((uint)reply.Type & 0x8000_0000) != 0,
            $"NBD_OPT_STARTTLS from a client that did not set NBD_FLAG_C_FIXED_NEWSTYLE was answered {reply.Type}, not an error (the server must be in NOTLS mode)");
    }

    /// <summary>
    /// doc/proto.md, "FORCEDTLS mode": "If the server receives any other option, including NBD_OPT_INFO and
    /// unsupported options, it MUST reply with NBD_REP_ERR_TLS_REQD if TLS has not been initiated." An option whose
    /// payload is over the 64 KiB NbdHandshake parses is skipped and answered NBD_REP_ERR_TOO_BIG before the TLS check
    /// (NbdHandshake.NegotiateAsync: the MaxOptionLength branch comes before the TlsMode.Required branch).
    /// </summary>
    [Fact]
    public async Task Required_mode_answers_an_oversized_option_before_STARTTLS_with_TLS_REQD()
    {
        using var certificate = HandshakeConversationTests.SelfSigned();
        await using var server = new TestServer(new NbdServerOptions { TlsMode = NbdTlsMode.Required, TlsCertificate = certificate });
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync();

        await client.SendOptionAsync((uint)OptionType.Info, new byte[100_000], 100_000);
        RawClient.OptionReplyMessage? reply = await client.ReadOptionReplyAsync();

        Assert.NotNull(reply);
        Assert.Equal(OptionReplyType.ErrTlsRequired, reply.Type);
    }
}
