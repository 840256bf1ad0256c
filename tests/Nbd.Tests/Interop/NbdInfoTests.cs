namespace Nbd.Tests.Interop;

public class NbdInfoTests
{
    [Fact]
    public async Task List_shows_every_export_with_its_description()
    {
        await using var server = new TestServer(null,
            new NbdExport("first", "the first disk", new Devices.MemoryBlockDevice(1 << 20)),
            new NbdExport("second", "the second disk", new Devices.MemoryBlockDevice(2 << 20, readOnly: true)));

        string output = (await Tool.RunAsync("nbdinfo", ["--list", "--json", server.Uri("")])).EnsureSuccess().Stdout;

        Assert.Contains("\"export-name\": \"first\"", output);
        Assert.Contains("\"description\": \"the first disk\"", output);
        Assert.Contains("\"export-name\": \"second\"", output);
        Assert.Contains("\"export-size\": 2097152", output);
        Assert.Contains("\"is_read_only\": true", output);
    }
}
