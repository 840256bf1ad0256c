using System.Text.Json;

namespace ZramDaemon.Tests.Daemon;

/// <summary>
/// The runtime settings zramd.csproj chooses (its comments say why), as the runtime reads them: from the
/// zramd.runtimeconfig.json next to the zramd.dll the daemon tests start (the single-file publish embeds the same file).
/// </summary>
public sealed class RuntimeConfigTests
{
    [Theory]
    [InlineData("System.GC.Server", "False")]
    [InlineData("System.GC.Concurrent", "False")]
    [InlineData("System.GC.RetainVM", "True")]
    public void The_daemon_runs_with_the_chosen_runtime_setting(string name, string expected)
    {
        string path = Path.ChangeExtension(ZramdProcess.DllPath, ".runtimeconfig.json");
        using JsonDocument config = JsonDocument.Parse(File.ReadAllText(path));
        JsonElement properties = config.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");

        Assert.True(properties.TryGetProperty(name, out JsonElement value), $"{path} does not set {name}");
        Assert.Equal(expected, value.ToString());
    }
}
