using ZramDaemon.Configuration;

namespace ZramDaemon.Tests.Configuration;

public class IniFileTests
{
    [Fact]
    public void Reads_sections_keys_values_and_lines_skipping_comments()
    {
        IniFile ini = IniFile.Parse("f.conf", "# comment\n[zramd]\n  listen = unix:/a.sock  \n; other\n\n[zram0]\nzram-size=ram/2\nzram-size = 100\n[zramd]\nsocket-mode = 0600\n");
        Assert.Equal(["zramd", "zram0"], ini.Sections);
        Assert.Equal(
            [
                new IniEntry("zramd", "listen", "unix:/a.sock", 3),
                new IniEntry("zram0", "zram-size", "ram/2", 7),
                new IniEntry("zram0", "zram-size", "100", 8),
                new IniEntry("zramd", "socket-mode", "0600", 10),
            ],
            ini.Entries);
    }

    [Fact]
    public void A_comment_after_whitespace_ends_the_value_or_header()
    {
        IniFile ini = IniFile.Parse("f.conf", "[zramd]   # daemon\ncontrol = /run/zramd/zramd.ctl      # ZRAMD_CONTROL, --control\nlog-level = info\t; or debug\n"
            + "[zram0]\nwriteback-file = /var/lib/a#b;c.wb\nattach = # none\n");
        Assert.Equal(["zramd", "zram0"], ini.Sections);
        Assert.Equal(
            [
                new IniEntry("zramd", "control", "/run/zramd/zramd.ctl", 2),
                new IniEntry("zramd", "log-level", "info", 3),
                new IniEntry("zram0", "writeback-file", "/var/lib/a#b;c.wb", 5),
                new IniEntry("zram0", "attach", string.Empty, 6),
            ],
            ini.Entries);
    }

    [Theory]
    [InlineData("[zram0\n", "f.conf:1: '[zram0' is not a section header")]
    [InlineData("[zram0]\njust words\n", "f.conf:2: 'just words' is not a setting")]
    [InlineData("[zram0]\n= 4\n", "f.conf:2: '= 4' is not a setting")]
    [InlineData("zram-size = 4\n", "f.conf:1: 'zram-size = 4' comes before any section")]
    public void Malformed_lines_say_where(string text, string message)
    {
        var e = Assert.Throws<ConfigurationException>(() => IniFile.Parse("f.conf", text));
        Assert.StartsWith(message, e.Message, StringComparison.Ordinal);
        Assert.Equal(78, e.ExitCode);
    }
}
