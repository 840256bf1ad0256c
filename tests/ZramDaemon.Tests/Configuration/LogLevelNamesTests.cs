using Serilog.Events;
using ZramDaemon.Configuration;

namespace ZramDaemon.Tests.Configuration;

/// <summary>log-level's words: what each means, and the word the startup report prints for a level, which must read
/// back as that level (a report a user copies into the file means what it said).</summary>
public sealed class LogLevelNamesTests
{
    [Theory]
    [InlineData("debug", LogEventLevel.Debug, "debug")]
    [InlineData("info", LogEventLevel.Information, "info")]
    [InlineData("Information", LogEventLevel.Information, "info")]
    [InlineData("warning", LogEventLevel.Warning, "warning")]
    [InlineData("WARN", LogEventLevel.Warning, "warning")]
    [InlineData("error", LogEventLevel.Error, "error")]
    public void A_word_means_its_level_and_the_level_prints_as_a_word_that_reads_back(string word, LogEventLevel level, string printed)
    {
        Assert.True(LogLevelNames.TryParse(word, out LogEventLevel parsed));
        Assert.Equal(level, parsed);
        Assert.Equal(printed, LogLevelNames.Name(parsed));
        Assert.True(LogLevelNames.TryParse(LogLevelNames.Name(parsed), out LogEventLevel again));
        Assert.Equal(level, again);
    }

    [Theory]
    [InlineData("chatty")]
    [InlineData("verbose")]
    [InlineData("")]
    public void Other_words_are_refused(string word) => Assert.False(LogLevelNames.TryParse(word, out _));
}
