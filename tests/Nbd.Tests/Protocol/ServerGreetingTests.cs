using Nbd.Protocol;

namespace Nbd.Tests.Protocol;

public class ServerGreetingTests
{
    // Golden vectors from doc/proto.md: "NBDMAGIC", "IHAVEOPT", then the 16-bit handshake flags.
    [Theory]
    [InlineData(HandshakeFlags.FixedNewstyle | HandshakeFlags.NoZeroes, "4E42444D41474943" + "49484156454F5054" + "0003")]
    [InlineData(HandshakeFlags.FixedNewstyle, "4E42444D41474943" + "49484156454F5054" + "0001")]
    public void Greeting_matches_the_wire_format(HandshakeFlags flags, string expectedHex)
    {
        var buffer = new byte[ServerGreeting.Length];
        ServerGreeting.Write(buffer, flags);
        Assert.Equal(expectedHex, Convert.ToHexString(buffer));
        Assert.Equal("NBDMAGICIHAVEOPT", System.Text.Encoding.ASCII.GetString(buffer, 0, 16));
    }

    [Fact]
    public void Greeting_refuses_a_short_buffer()
    {
        Assert.Throws<ArgumentException>(() => ServerGreeting.Write(new byte[17], HandshakeFlags.FixedNewstyle));
    }
}
