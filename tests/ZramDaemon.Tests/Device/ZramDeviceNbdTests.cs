using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>
/// The device behind the real NBD server, driven by real clients (libnbd's nbdcopy and nbdinfo, from
/// TEST_PACKAGES): nbdcopy writes over several connections at once, so this is also the multi-connection case.
/// </summary>
public sealed class ZramDeviceNbdTests : IAsyncLifetime
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "zram-nbd-" + Guid.NewGuid().ToString("N")[..12]);
    private ServedZramDevice _served = null!;

    private string Uri => $"nbd+unix:///zram0?socket={Path.Combine(_directory, "nbd.sock")}";

    public Task InitializeAsync()
    {
        Directory.CreateDirectory(_directory);
        _served = new ServedZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = 32L << 20 }, Path.Combine(_directory, "nbd.sock"));
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _served.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public async Task Nbdcopy_round_trips_mixed_data_and_nbdinfo_maps_the_zero_slots_as_holes()
    {
        string source = Path.Combine(_directory, "source.img");
        string back = Path.Combine(_directory, "back.img");
        byte[] data = DevicePages.Mixed(new Random(21), 24 << 20);
        data.AsSpan(16 << 20, 8 << 20).Clear(); // an 8 MiB run of zeros in the middle...
        data.AsSpan(0, 4096).Fill(0x41);        // ...and data at the start and just before the run, so the map is known
        data.AsSpan((16 << 20) - 4096, 4096).Fill(0x42);
        await File.WriteAllBytesAsync(source, data);
        await using (FileStream file = File.OpenWrite(source))
        {
            file.SetLength(32 << 20); // and an 8 MiB sparse tail
        }

        await Run("nbdcopy", source, Uri);
        await Run("nbdcopy", Uri, back);
        byte[] expected = new byte[32 << 20];
        data.CopyTo(expected, 0);
        byte[] copied = await File.ReadAllBytesAsync(back);
        Assert.True(expected.AsSpan().SequenceEqual(copied), "nbdcopy read back other bytes");

        ZramStats stats = _served.Device.GetStats();
        Assert.Equal(0, stats.FailedReads + stats.FailedWrites + stats.InvalidIo);
        Assert.True(stats.ComprDataSize > 0 && stats.ComprDataSize < stats.OrigDataSize);

        // The last 16 MiB (zeros and the sparse tail) is one hole; the first page is data.
        string map = await Run("nbdinfo", "--map", Uri);
        Assert.Matches(@"(?m)^\s*0\s+\d+\s+0\s+data", map);
        Assert.Matches(@"(?m)^\s*16777216\s+16777216\s+3\s+hole,zero", map);
    }

    private static async Task<string> Run(string file, params string[] arguments)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        using var process = Process.Start(info) ?? throw new InvalidOperationException("cannot start " + file);
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync(timeout.Token);
        Assert.True(process.ExitCode == 0, $"{file} {string.Join(' ', arguments)} exited {process.ExitCode}: {await stderr}");
        return await stdout;
    }
}
