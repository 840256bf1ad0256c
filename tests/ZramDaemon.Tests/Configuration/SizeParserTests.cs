using ZramDaemon.Configuration;

namespace ZramDaemon.Tests.Configuration;

public class SizeParserTests
{
    [Theory]
    [InlineData("4096", 4096L)]
    [InlineData("4K", 4096L)]
    [InlineData("512m", 512L * 1024 * 1024)]
    [InlineData("4G", 4L * 1024 * 1024 * 1024)]
    [InlineData("1T", 1L << 40)]
    [InlineData(" 64M ", 64L << 20)]
    public void Parses_sizes_like_memparse(string text, long expected)
    {
        Assert.True(SizeParser.TryParse(text, out long bytes, out string error), error);
        Assert.Equal(expected, bytes);
    }

    [Theory]
    [InlineData("")]
    [InlineData("G")]
    [InlineData("-1G")]
    [InlineData("1.5G")]
    [InlineData("4X")]
    [InlineData("99999999999T")]
    public void Rejects_what_is_not_a_size_with_a_reason(string text)
    {
        Assert.False(SizeParser.TryParse(text, out _, out string error));
        Assert.False(string.IsNullOrEmpty(error));
    }
}
