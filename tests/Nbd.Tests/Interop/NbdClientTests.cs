namespace Nbd.Tests.Interop;

/// <summary>nbd-client 3.24 itself, as far as it runs without the kernel driver: listing exports.</summary>
public class NbdClientTests
{
    [Fact]
    public async Task Nbd_client_lists_the_exports()
    {
        await using var server = new TestServer(null,
            new NbdExport("swap0", "zram swap", new Devices.MemoryBlockDevice(1 << 20)),
            new NbdExport("scratch", "zram scratch", new Devices.MemoryBlockDevice(1 << 20)));

        Tool.Result result = (await Tool.RunAsync("nbd-client", ["-l", "-u", server.SocketPath])).EnsureSuccess();

        Assert.Contains("swap0", result.Stdout);
        Assert.Contains("scratch", result.Stdout);
    }
}
