using ZramDaemon.Vm.Tests.Harness;

namespace ZramDaemon.Vm.Tests;

[Collection(VmCollection.Name)]
public sealed class RawDeviceTests(VmFixture vm, ITestOutputHelper output)
{
    private const long PatternBytes = 8L << 20;

    [Fact]
    public void Direct_io_pattern_written_over_four_connections_survives_a_reconnect_and_the_host_reads_the_same_bytes()
    {
        using var zramd = ZramdServer.Start(size: "1G");
        GuestRun run = GuestRun.Start(vm.Image, "raw", zramd.Socket);
        output.WriteLine($"VM run: {run.Elapsed.TotalSeconds:F1} s");

        run.AssertCompleted();
        Assert.Equal(1L << 30, run.Number("raw.size_bytes"));
        // Written over nbd-client -C 4 (four sockets in the kernel), read back over one.
        Assert.Equal(4, run.Number("raw.connections"));
        Assert.Equal(1, run.Number("raw.connections_after_reconnect"));
        string written = run["raw.written_sha256"];
        Assert.Matches("^[0-9a-f]{64}$", written);
        Assert.Equal(written, run["raw.readback_sha256"]);
        Assert.Equal(written, HostNbd.Sha256(zramd.Socket, run.Number("raw.offset"), PatternBytes));
    }
}
