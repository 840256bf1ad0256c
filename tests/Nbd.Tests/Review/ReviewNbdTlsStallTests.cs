using Nbd.Protocol;
using Nbd.Tests.Interop;
using Nbd.Tests.Sessions;

namespace Nbd.Tests.Review;

/// <summary>Review coverage (passing): a client that stalls inside the TLS handshake STARTTLS began is dropped by the
/// handshake timeout, as a plain one is (TransmissionConversationTests covers only the plain case), and the
/// connection is not left counted.</summary>
public class ReviewNbdTlsStallTests
{
    [Theory]
    [InlineData(0)]   // nothing after the ACK
    [InlineData(40)]  // the first 40 bytes of a TLS record header and ClientHello, then nothing
    public async Task A_client_that_stalls_in_the_TLS_handshake_is_dropped_after_the_timeout(int bytes)
    {
        using var certificate = HandshakeConversationTests.SelfSigned();
        await using var server = new TestServer(new NbdServerOptions
        {
            TlsMode = NbdTlsMode.Required,
            TlsCertificate = certificate,
            HandshakeTimeout = TimeSpan.FromSeconds(5), // long enough for the client to reach STARTTLS on a loaded machine (500 ms: broken pipe at its first send once); under RawClient's 10 s wait for the close
        });
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync();
        await client.SendOptionAsync((uint)OptionType.StartTls, []);
        Assert.Equal(OptionReplyType.Ack, (await client.ReadOptionReplyAsync())!.Type);
        if (bytes > 0)
        {
            // A TLS 1.2 handshake record that claims 512 bytes of ClientHello and carries fewer.
            byte[] partial = new byte[bytes];
            partial[0] = 0x16;
            partial[1] = 0x03;
            partial[2] = 0x01;
            partial[3] = 0x02;
            partial[4] = 0x00;
            partial[5] = 0x01;
            await client.SendAsync(partial);
        }

        Assert.True(await client.IsClosedByServerAsync(), "the server kept a connection stalled in its TLS handshake");
        Assert.True(await Poll.UntilAsync(() => server.Server.ConnectionCount == 0), $"{server.Server.ConnectionCount} connections still counted");
    }
}
