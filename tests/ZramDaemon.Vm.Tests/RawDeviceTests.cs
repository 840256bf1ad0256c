using ZramDaemon.Vm.Tests.Harness;

namespace ZramDaemon.Vm.Tests;

[Collection(VmCollection.Name)]
public sealed class RawDeviceTests(VmFixture vm, ITestOutputHelper output)
{
    private const long PatternBytes = 8L << 20;

    [Fact]
    public void Direct_io_pattern_survives_a_reconnect_and_the_host_reads_the_same_bytes()
    {
        using var zramd = ZramdServer.Start(size: "1G");
        GuestRun run = GuestRun.Start(vm.Image, "raw", zramd.Socket);
        output.WriteLine($"VM run: {run.Elapsed.TotalSeconds:F1} s");

        run.AssertCompleted();
        Assert.Equal(1L << 30, run.Number("raw.size_bytes"));
        string written = run["raw.written_sha256"];
        Assert.Matches("^[0-9a-f]{64}$", written);
        Assert.Equal(written, run["raw.readback_sha256"]);
        Assert.Equal(written, HostNbd.Sha256(zramd.Socket, run.Number("raw.offset"), PatternBytes));
    }
}
