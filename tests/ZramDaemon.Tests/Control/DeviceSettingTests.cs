using ZramDaemon.Control;

namespace ZramDaemon.Tests.Control;

/// <summary>What <c>zramd set</c> takes, checked by the CLI and the daemon alike.</summary>
public class DeviceSettingTests
{
    [Theory]
    [InlineData("writeback_limit", "0", 0L)]
    [InlineData("writeback_limit", "4K", 4096L)]
    [InlineData("writeback_limit", "4096", 4096L)]
    [InlineData("writeback_limit", "1G", 1L << 30)]
    [InlineData("mem_limit", "400", 400L)] // as the kernel's mem_limit: bytes, whatever they come to
    public void Sizes_are_taken_in_bytes(string key, string value, long expected)
    {
        Assert.True(DeviceSetting.TryParse(key, value, out DeviceSetting setting, out string error), error);
        Assert.Equal(expected, setting.Bytes);
    }

    /// <summary>The kernel's writeback_limit counts 4K pages: its "400" taken as 400 bytes would stop every writeback
    /// and say nothing. Found by review.</summary>
    [Theory]
    [InlineData("1")]
    [InlineData("400")]
    [InlineData("4095")]
    public void A_writeback_limit_under_one_page_is_refused_saying_the_unit(string value)
    {
        Assert.False(DeviceSetting.TryParse("writeback_limit", value, out _, out string error));
        Assert.StartsWith($"writeback_limit: {value} bytes is less than a page", error, StringComparison.Ordinal);
        Assert.Contains("not the kernel's 4K pages", error, StringComparison.Ordinal);
    }
}
