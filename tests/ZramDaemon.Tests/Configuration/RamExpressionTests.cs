using ZramDaemon.Configuration;

namespace ZramDaemon.Tests.Configuration;

public class RamExpressionTests
{
    [Theory]
    [InlineData("min(ram / 2, 4096)", 16384, 4096)]
    [InlineData("min(ram / 2, 4096)", 2048, 1024)]
    [InlineData("ram / 4", 1000, 250)]
    [InlineData("ram * 3/4", 1024, 768)]
    [InlineData("2 + 3 * 4", 0, 14)]
    [InlineData("(2 + 3) * 4", 0, 20)]
    [InlineData("10 - 4 - 3", 0, 3)]
    [InlineData("-ram + 100", 30, 70)]
    [InlineData("max(1, 7, 3)", 0, 7)]
    [InlineData("min(max(ram, 10), 20, 30)", 15, 15)]
    [InlineData("4G", 0, 4096)]
    [InlineData("512M + 512K", 0, 512.5)]
    [InlineData("ram / 10.5", 21, 2)]
    [InlineData("  4096  ", 0, 4096)]
    public void Evaluates_like_zram_generator(string expression, double ram, double expected)
    {
        Assert.True(RamExpression.TryEvaluate(expression, ram, out double mib, out string error), error);
        Assert.Equal(expected, mib, 9);
    }

    [Theory]
    [InlineData("", "required")]
    [InlineData("ram / 0", "division by zero")]
    [InlineData("ram / (2 - 2)", "division by zero")]
    [InlineData("rom / 2", "unknown name 'rom'")]
    [InlineData("min(ram, 2", "missing ')'")]
    [InlineData("ram +", "ends too early")]
    [InlineData("ram 2", "unexpected '2' at position 5")]
    [InlineData("ram % 2", "unexpected '%'")]
    [InlineData("1..2", "'1..2' is not a number")]
    [InlineData("min()", "unexpected ')'")]
    public void Says_what_is_wrong(string expression, string reason)
    {
        Assert.False(RamExpression.TryEvaluate(expression, 1024, out _, out string error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }

    /// <summary>Up to MaxNesting levels of parentheses, calls and unary minus signs evaluate; one more is an error
    /// rather than a deeper recursion (see CommandLineProcessTests for the stack overflow it prevents).</summary>
    [Theory]
    [InlineData("(", ")")]
    [InlineData("max(", ")")]
    [InlineData("-", "")]
    public void Nesting_is_limited(string open, string close)
    {
        string Nested(int levels) => string.Concat(Enumerable.Repeat(open, levels)) + "1" + string.Concat(Enumerable.Repeat(close, levels));
        Assert.True(RamExpression.TryEvaluate(Nested(RamExpression.MaxNesting), 1024, out double mib, out string error), error);
        Assert.Equal(1, mib);
        Assert.False(RamExpression.TryEvaluate(Nested(RamExpression.MaxNesting + 1), 1024, out _, out error));
        Assert.Contains($"nested more than {RamExpression.MaxNesting} levels deep", error, StringComparison.Ordinal);
    }

    /// <summary>RAM unknown (no /proc/meminfo): only an expression that uses ram fails, saying why.</summary>
    [Fact]
    public void Without_ram_only_an_expression_using_it_fails()
    {
        Assert.True(RamExpression.TryEvaluate("max(4G, 512)", null, out double mib, out _));
        Assert.Equal(4096, mib);
        Assert.False(RamExpression.TryEvaluate("min(ram / 2, 4096)", null, out _, out string error));
        Assert.Equal(RamExpression.RamUnknown, error);
    }
}
