using Nbd.Devices;
using Xunit.Abstractions;

namespace ZramDaemon.Tests.Device.KernelParity;

/// <summary>
/// Scenario 5: requests out of the device's range. The kernel's block layer refuses them before zram sees them (a write
/// at the end fails, a read there returns nothing), and zram has printed invalid_io as a literal 0 since 6.4; zramd
/// refuses them itself (EINVAL over NBD) and keeps its own invalid_io count out of io_stat. Either way io_stat should
/// read the same: no failed read or write, invalid_io 0.
/// </summary>
public sealed class KernelParityIoStatTests(ITestOutputHelper output)
{
    private const int Page = ParityPages.PageSize;

    [KernelZramFact]
    public void Io_stat_after_out_of_range_requests_reads_as_the_kernels()
    {
        const long size = 16L << 20;
        using var pair = new ParityPair(size);
        var random = new Random(64);
        for (int i = 0; i < 4; i++)
        {
            pair.Write(i, ParityPages.Text(random, 0.3).Data);
        }

        byte[] page = ParityPages.Text(random, 0.3).Data;
        Assert.False(pair.Kernel.TryWriteAt(size, page));
        Assert.False(pair.Kernel.TryWriteAt(size + Page, page));
        Assert.Equal(0, pair.Kernel.ReadAt(size));
        Assert.Equal(NbdError.Invalid, pair.Zramd.Write(size, page, fua: false));
        Assert.Equal(NbdError.Invalid, pair.Zramd.Write(size + Page, page, fua: false));
        Assert.Equal(NbdError.Invalid, pair.Zramd.Read(size, new byte[Page]));

        string kernel = pair.Kernel.ReadIoStatLine();
        string zramd = pair.Zramd.GetStats().FormatIoStat();
        ParitySnapshot s = pair.Snapshot("after out-of-range requests");
        output.WriteLine(s.Format());
        output.WriteLine($"io_stat kernel '{kernel}'");
        output.WriteLine($"io_stat zramd  '{zramd}' (zramd's own invalid_io: {s.Zramd.InvalidIo})");
        Assert.Equal(kernel, zramd);
        Assert.Equal(s.Kernel.OrigDataSize, s.Zramd.OrigDataSize);
    }

    /// <summary>A discard counts notify_free per page of its range, written or not, on both; io_stat reads the same.</summary>
    [KernelZramFact]
    public void Io_stat_after_discards_reads_as_the_kernels()
    {
        using var pair = new ParityPair(16L << 20);
        var random = new Random(65);
        for (int i = 0; i < 8; i++)
        {
            pair.Write(i, ParityPages.Text(random, 0.2).Data);
        }

        pair.Discard(2, 4);
        pair.Discard(100, 7);
        pair.Discard(0, 1);
        string kernel = pair.Kernel.ReadIoStatLine();
        string zramd = pair.Zramd.GetStats().FormatIoStat();
        output.WriteLine(pair.Snapshot("after discards").Format());
        output.WriteLine($"io_stat kernel '{kernel}'");
        output.WriteLine($"io_stat zramd  '{zramd}'");
        Assert.Equal(kernel, zramd);
        Assert.Equal(12, pair.Kernel.ReadIoStat().NotifyFree);
    }
}
