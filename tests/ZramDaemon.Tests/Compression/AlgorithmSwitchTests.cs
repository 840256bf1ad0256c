using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;
using ZramDaemon.Tests.Device;

namespace ZramDaemon.Tests.Compression;

/// <summary><c>zramd set algorithm</c> on a device in use: what a switch costs, and what it keeps.</summary>
public class AlgorithmSwitchTests
{
    private const int Page = ZramDevice.PageSize;

    /// <summary>
    /// Every SetAlgorithm used to make a new Compressor (one stream per CPU: zstd contexts, an 8 KiB buffer each) and
    /// keep it until the device is disposed, even when an identical spec was used before: a script that switches
    /// between two algorithms (day/night tuning, an operator trying levels) grew the daemon without bound (200
    /// switches between zstd:19 and lz4 kept 31 MiB on 2 CPUs). Each spec's compressor is made once now.
    /// </summary>
    [Fact]
    public void Switching_back_and_forth_between_two_algorithms_does_not_grow_memory_without_bound()
    {
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = 16L << 20, Algorithm = "lz4" }, NullLoggerFactory.Instance);
        byte[] page = (byte[])DevicePages.TextPage(1).Clone();
        var back = new byte[Page];

        void SwitchAndWrite(string algorithm, int index)
        {
            device.SetAlgorithm(algorithm);
            Assert.Equal(NbdError.None, device.Write((long)index * Page, page, fua: false));
            Assert.Equal(NbdError.None, device.Read((long)index * Page, back));
            Assert.Equal(page, back);
        }

        // Both specs once: the device's first (lz4) and zstd:19.
        SwitchAndWrite("zstd:19", 0);
        SwitchAndWrite("lz4", 1);
        Assert.Equal(2, device.CompressorCount);
        for (int i = 0; i < 200; i++)
        {
            SwitchAndWrite(i % 2 == 0 ? "zstd:19" : "lz4", 2 + i);
        }

        Assert.Equal(2, device.CompressorCount);
        SwitchAndWrite("zstd:3", 300);
        Assert.Equal(3, device.CompressorCount);

        // Every page still reads back, whichever compressor wrote it.
        foreach (int i in Enumerable.Range(0, 202).Append(300))
        {
            Assert.Equal(NbdError.None, device.Read((long)i * Page, back));
            Assert.Equal(page, back);
        }
    }

    /// <summary>
    /// Each new setting keeps a compressor (a stream per CPU) for the device's life, and `zramd set NAME
    /// comp_algorithm=` reaches it from the control socket: stepping through lz4's 65,537 accelerations kept one per
    /// step (501 after 500, about 24 KiB x CPUs each, outside mem_used_total). A device keeps MaxAlgorithmSettings
    /// now and refuses a new one past them; the ones it has stay usable.
    /// </summary>
    [Fact]
    public void Stepping_through_many_levels_is_refused_past_a_few_settings()
    {
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = 16L << 20, Algorithm = "lz4" }, NullLoggerFactory.Instance);
        byte[] page = (byte[])DevicePages.TextPage(1).Clone();
        int refused = 0;
        for (int level = 2; level <= 501; level++)
        {
            try
            {
                device.SetAlgorithm($"lz4:{level}");
            }
            catch (InvalidOperationException e)
            {
                Assert.Contains("the most it keeps", e.Message, StringComparison.Ordinal);
                refused++;
            }

            Assert.Equal(NbdError.None, device.Write((long)level * Page, page, fua: false));
        }

        Assert.Equal(ZramDevice.MaxAlgorithmSettings, device.CompressorCount);
        Assert.Equal(500 - (ZramDevice.MaxAlgorithmSettings - 1), refused);
        Assert.Equal("lz4:4", device.Algorithm); // the last one taken
        device.SetAlgorithm("lz4");
        Assert.Equal(ZramDevice.MaxAlgorithmSettings, device.CompressorCount);
        var back = new byte[Page];
        for (int level = 2; level <= 501; level++)
        {
            Assert.Equal(NbdError.None, device.Read((long)level * Page, back));
            Assert.Equal(page, back);
        }
    }
}
