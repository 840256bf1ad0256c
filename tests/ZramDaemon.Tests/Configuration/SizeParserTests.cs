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
    [InlineData("", "a size is required")]
    [InlineData("G", "is not a size")]
    [InlineData("-1G", "is not a size")]
    [InlineData("1.5G", "is not a size")]
    [InlineData("4X", "is not a size")]
    [InlineData("99999999999T", "is too large")]
    [InlineData("99999999999999999999G", "is too large")]
    [InlineData("99999999999999999999", "is too large")]
    public void Rejects_what_is_not_a_size_with_a_reason(string text, string reason)
    {
        Assert.False(SizeParser.TryParse(text, out _, out string error));
        Assert.StartsWith(text.Length == 0 ? reason : $"'{text}' {reason}", error, StringComparison.Ordinal);
    }

    /// <summary>A size as the startup report prints it reads back as that size: exact, never rounded (a max-payload of
    /// 5000 printed as "4.9K" before).</summary>
    [Theory]
    [InlineData(5000L, "5000")]
    [InlineData(1000000L, "1000000")]
    [InlineData(4096L, "4K")]
    [InlineData(32L << 20, "32M")]
    [InlineData((4L << 30) + (512L << 20), "4608M")]
    [InlineData(1L << 40, "1T")]
    [InlineData(0L, "0")]
    public void Formats_sizes_that_parse_back_exactly(long bytes, string expected)
    {
        Assert.Equal(expected, SizeParser.Format(bytes));
        Assert.True(SizeParser.TryParse(SizeParser.Format(bytes), out long back, out string error), error);
        Assert.Equal(bytes, back);
    }
}
