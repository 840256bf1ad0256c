using System.Net;
using ZramDaemon.Configuration;

namespace ZramDaemon.Tests.Configuration;

public class ListenAddressTests
{
    [Theory]
    [InlineData("tcp:127.0.0.1:10809", "127.0.0.1", 10809)]
    [InlineData("tcp:localhost:2000", "127.0.0.1", 2000)]
    [InlineData("tcp:0.0.0.0", "0.0.0.0", 10809)]
    [InlineData("tcp:[::1]:99", "::1", 99)]
    [InlineData("tcp:[::]", "::", 10809)]
    [InlineData("tcp:", "127.0.0.1", 10809)]
    [InlineData("tcp:10810", "127.0.0.1", 10810)]
    [InlineData("tcp::10811", "127.0.0.1", 10811)]
    public void Parses_tcp(string text, string ip, int port)
    {
        Assert.True(ListenAddress.TryParse(text, out ListenAddress? address, out string error), error);
        Assert.False(address.IsUnix);
        Assert.Equal(new IPEndPoint(IPAddress.Parse(ip), port), address.EndPoint);
    }

    [Fact]
    public void Parses_unix_and_makes_the_path_absolute()
    {
        Assert.True(ListenAddress.TryParse("unix:/run/zramd/x.sock", out ListenAddress? absolute, out _));
        Assert.Equal("/run/zramd/x.sock", absolute.UnixPath);
        Assert.Equal("unix:/run/zramd/x.sock", absolute.ToString());
        Assert.True(ListenAddress.TryParse("unix:rel.sock", out ListenAddress? relative, out _));
        Assert.Equal(Path.Combine(Environment.CurrentDirectory, "rel.sock"), relative.UnixPath);
    }

    [Theory]
    [InlineData("/run/zramd.sock", "unix:PATH")]
    [InlineData("unix:", "needs a file path")]
    [InlineData("unix:/run/zramd/", "needs a file path")]
    [InlineData("tcp:70000", "not a port")]
    [InlineData("tcp::x", "not a port")]
    [InlineData("tcp:example.org:1", "not an IP address")]
    [InlineData("tcp:127.0.0.1:0", "not a port")]
    [InlineData("tcp:127.0.0.1:65536", "not a port")]
    [InlineData("tcp:127.0.0.1:x", "not a port")]
    [InlineData("tcp:::1:10809", "in brackets")]
    [InlineData("tcp:[::1", "closing ']'")]
    public void Rejects_with_a_reason(string text, string reason)
    {
        Assert.False(ListenAddress.TryParse(text, out _, out string error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }

    [Fact]
    public void Rejects_a_path_longer_than_sun_path()
    {
        Assert.False(ListenAddress.TryParse("unix:/" + new string('a', 120), out _, out string error));
        Assert.Contains("107 bytes", error, StringComparison.Ordinal);
    }
}
