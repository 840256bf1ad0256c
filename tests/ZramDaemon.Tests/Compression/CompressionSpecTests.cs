using ZramDaemon.Compression;

namespace ZramDaemon.Tests.Compression;

public class CompressionSpecTests
{
    [Theory]
    [InlineData("lz4", CompressionAlgorithm.Lz4, 1, "lz4")]
    [InlineData("LZ4", CompressionAlgorithm.Lz4, 1, "lz4")]
    [InlineData("lz4:8", CompressionAlgorithm.Lz4, 8, "lz4:8")]
    [InlineData("lz4hc", CompressionAlgorithm.Lz4Hc, 9, "lz4hc:9")]
    [InlineData("lz4hc:9", CompressionAlgorithm.Lz4Hc, 9, "lz4hc:9")]
    [InlineData("lz4hc:12", CompressionAlgorithm.Lz4Hc, 12, "lz4hc:12")]
    [InlineData("zstd", CompressionAlgorithm.Zstd, 3, "zstd:3")]
    [InlineData(" zstd:19 ", CompressionAlgorithm.Zstd, 19, "zstd:19")]
    [InlineData("zstd(level=5)", CompressionAlgorithm.Zstd, 5, "zstd:5")] // zram-generator's spelling
    [InlineData("lz4hc()", CompressionAlgorithm.Lz4Hc, 9, "lz4hc:9")]
    public void Parses_the_algorithm_strings(string text, CompressionAlgorithm algorithm, int level, string canonical)
    {
        Assert.True(CompressionSpec.TryParse(text, out CompressionSpec spec, out string error), error);
        Assert.Equal(algorithm, spec.Algorithm);
        Assert.Equal(level, spec.Level);
        Assert.Equal(canonical, spec.ToString());
        Assert.Equal(spec, CompressionSpec.Parse(spec.ToString()));
    }

    [Theory]
    [InlineData("")]
    [InlineData("lzo")]
    [InlineData("deflate")]
    [InlineData("lz4hc:0")]
    [InlineData("lz4hc:13")]
    [InlineData("zstd:23")]
    [InlineData("zstd:-1")]
    [InlineData("zstd:")]
    [InlineData("zstd:3x")]
    [InlineData("lz4:0")]
    [InlineData("zstd(level=)")]
    [InlineData("zstd(dict=/etc/d)")]
    public void Rejects_bad_algorithm_strings_with_a_reason(string text)
    {
        Assert.False(CompressionSpec.TryParse(text, out _, out string error));
        Assert.Contains(text.Trim().Length == 0 ? "required" : "'" + text + "'", error, StringComparison.Ordinal);
        FormatException ex = Assert.Throws<FormatException>(() => CompressionSpec.Parse(text));
        Assert.Equal(error, ex.Message);
    }
}
