using ZramDaemon.Vm.Tests.Harness;

namespace ZramDaemon.Vm.Tests;

[Collection(VmCollection.Name)]
public sealed class Ext4Tests(VmFixture vm, ITestOutputHelper output)
{
    [Fact]
    public void Ext4_files_survive_fsck_and_a_reconnect_and_fstrim_discards()
    {
        using var zramd = ZramdServer.Start(size: "1G");
        GuestRun run = GuestRun.Start(vm.Image, "ext4", zramd.Socket);
        output.WriteLine($"VM run: {run.Elapsed.TotalSeconds:F1} s; fstrim: {run["ext4.fstrim_bytes"]} bytes");

        run.AssertCompleted();
        Assert.Equal(12, run.Number("ext4.files"));
        Assert.Equal(0, run.Number("ext4.fsck_rc"));
        Assert.Equal(0, run.Number("ext4.checksums_rc"));
        Assert.True(run.Number("ext4.fstrim_bytes") > 0, run.Console);
        Assert.Equal(6, run.Number("ext4.files_kept"));

        // fstrim's discards reached zramd, and the text files left on the disk are stored compressed.
        Dictionary<string, long> stats = zramd.Stats();
        output.WriteLine(string.Join(", ", stats.Select(kv => $"{kv.Key}={kv.Value}")));
        Assert.True(stats["discarded_pages"] > 0, "no discard reached zramd");
        Assert.True(stats["orig_data_size"] > 0);
        Assert.InRange(stats["compr_data_size"], 1, stats["orig_data_size"] - 1);
    }
}
