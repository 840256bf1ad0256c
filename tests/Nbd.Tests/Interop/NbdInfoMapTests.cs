using Nbd.Tests.Devices;

namespace Nbd.Tests.Interop;

public class NbdInfoMapTests
{
    [Fact]
    public async Task Map_reports_data_holes_and_allocated_zeroes_from_the_device()
    {
        await using var server = new TestServer();
        MemoryBlockDevice device = server.Device();
        device.Write(0, new byte[8192].AsSpan().ToArray().Select(_ => (byte)1).ToArray(), fua: false);
        device.WriteZeroes(65536, 16384, noHole: true, fastZero: false);

        string map = (await Tool.RunAsync("nbdinfo", ["--map", server.Uri()])).EnsureSuccess().Stdout;

        Assert.Matches(@"(?m)^\s*0\s+8192\s+0\s+data$", map);
        Assert.Matches(@"(?m)^\s*8192\s+57344\s+3\s+hole,zero$", map);
        Assert.Matches(@"(?m)^\s*65536\s+16384\s+2\s+zero$", map);
        Assert.Matches(@"(?m)^\s*81920\s+16695296\s+3\s+hole,zero$", map);
    }

    [Theory]
    [InlineData("--can=flush", false, 0)]
    [InlineData("--can=fua", false, 0)]
    [InlineData("--can=trim", false, 0)]
    [InlineData("--can=zero", false, 0)]
    [InlineData("--can=fast-zero", false, 0)]
    [InlineData("--can=cache", false, 0)]
    [InlineData("--can=multi-conn", false, 0)]
    [InlineData("--can=df", false, 0)]
    [InlineData("--can=structured-reply", false, 0)]
    [InlineData("--is=read-only", false, 2)]
    [InlineData("--is=read-only", true, 0)]
    [InlineData("--can=trim", true, 2)]
    [InlineData("--can=zero", true, 2)]
    [InlineData("--can=fua", true, 2)]
    [InlineData("--is=rotational", false, 2)]
    public async Task Can_reports_the_advertised_features(string query, bool readOnly, int expectedExitCode)
    {
        await using var server = new TestServer(null, new NbdExport("mem", "test", new MemoryBlockDevice(1 << 20, readOnly)));

        Tool.Result result = await Tool.RunAsync("nbdinfo", [query, server.Uri()]);

        Assert.True(expectedExitCode == result.ExitCode, $"{query}: exit {result.ExitCode}, {result.Stderr}");
    }
}
