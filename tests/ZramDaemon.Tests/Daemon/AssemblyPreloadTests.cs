namespace ZramDaemon.Tests.Daemon;

/// <summary>
/// What the serving paths need is loaded before the first client: a lazy load at the first handshake that fails (no
/// descriptor free under a burst of clients) is remembered by the runtime, and every later handshake fails the same way.
/// Checked through the images mapped in /proc/PID/maps right after the start line, before any connection.
/// </summary>
public sealed class AssemblyPreloadTests
{
    [Fact]
    public void The_handshake_and_control_reply_assemblies_are_mapped_before_any_client_connects()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"]);
        string maps = File.ReadAllText($"/proc/{daemon.Process.Id}/maps");
        foreach (string image in new[] { "System.Net.Security.dll", "System.Text.Json.dll", "System.Text.Encodings.Web.dll" })
        {
            Assert.True(maps.Contains("/" + image, StringComparison.Ordinal), $"{image} is not loaded at start");
        }
    }
}
