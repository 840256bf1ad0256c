using ZramDaemon.Vm.Tests.Harness;

namespace ZramDaemon.Vm.Tests;

[Collection(VmCollection.Name)]
public sealed class SwapTests(VmFixture vm, ITestOutputHelper output)
{
    // A 160 MiB guest (about 122 MiB usable) filling 224 MiB must push at least 64 MiB out to swap.
    private const string GuestMemory = "160M";
    private const int FillMib = 224;

    [Fact]
    public void Swap_on_nbd_keeps_every_page_when_the_guest_fills_more_memory_than_it_has()
    {
        using var zramd = ZramdServer.Start(size: "1G");
        GuestRun run = GuestRun.Start(vm.Image, "swap", zramd.Socket, GuestMemory, environment: $"ZT_FILL_MIB={FillMib}");
        output.WriteLine($"VM run: {run.Elapsed.TotalSeconds:F1} s; swap in use after the fill: {run["memfill.swap_used_kib_after_fill"]} KiB");

        run.AssertCompleted();
        Assert.True(run.Number("swap.mem_total_kib") < FillMib * 1024, "the fill must exceed the guest's memory\n" + run.Console);
        Assert.Equal(FillMib * 256L, run.Number("memfill.pages"));
        Assert.Equal(0, run.Number("memfill.bad_pages"));
        Assert.Equal(0, run.Number("swap.memfill_rc"));
        Assert.True(run.Number("memfill.swap_used_kib_after_fill") >= 64 * 1024, "swap was barely used\n" + run.Console);
        // /proc/swaps listed the device as active swap: name, size, used.
        string[] swaps = run["swap.proc_swaps_line"].Split(',');
        Assert.Equal("/dev/nbd0", swaps[0]);
        Assert.True(long.Parse(swaps[1], System.Globalization.CultureInfo.InvariantCulture) > 1000 * 1024, run.Console);
        Assert.Equal(0, run.Number("swap.swapoff_rc"));
        // swapon --discard discards the whole area at swapon, then each freed cluster.
        Assert.True(zramd.Stats()["discarded_pages"] > 0, "no discard reached zramd");
    }
}
