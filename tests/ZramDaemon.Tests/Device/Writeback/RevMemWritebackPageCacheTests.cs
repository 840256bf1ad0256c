using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using Xunit.Abstractions;
using ZramDaemon.Device;
using ZramDaemon.Device.Writeback;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>
/// Review (memory): what writeback gives back. The kernel's zram writes a slot back with a bio straight to its
/// backing block device (zram_drv.c: zram_writeback_slots / submit_bio_wait; reads: read_from_bdev), so the page
/// leaves RAM. zramd writes with pwrite to a regular file opened without O_DIRECT and never drops its pages from the
/// page cache (BackingFile.cs: open(O_RDWR|O_CREAT|O_CLOEXEC), no fsync, no posix_fadvise(DONTNEED)), one whole 4 KiB
/// block per slot whatever its compressed size: each object written back leaves the pool and a full page of it stays in
/// RAM, dirty until the kernel's flusher writes it (30 s by default) and cached after that, charged to zramd's memory
/// cgroup (MemoryMax= on its unit). mem_used_total falls; the memory held for the device grows.
/// Residency of the file's pages is read with fincore(1) (mincore(2)).
/// </summary>
public sealed class RevMemWritebackPageCacheTests(ITestOutputHelper output) : IDisposable
{
    private const int Page = ZramDevice.PageSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-revmem-wb-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Writeback_lowers_the_memory_held_for_the_pages_it_writes_back()
    {
        const long size = 64L << 20;
        const int pages = 8192;
        string file = Path.Combine(_dir, "zram0.wb");
        using var device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = size, BackingFile = file, CompactThresholdPages = 0 },
            NullLoggerFactory.Instance);
        for (int i = 0; i < pages; i++)
        {
            byte[] text = DevicePages.TextPage(i);
            var page = (byte[])text.Clone();
            BitConverter.TryWriteBytes(page.AsSpan(0, 8), (long)i);
            Assert.Equal(NbdError.None, device.Write((long)i * Page, page, fua: false));
        }

        device.Compact();
        ZramStats before = device.GetStats();
        long cachedBefore = CachedPages(file);

        WritebackResult result = device.Writeback(SlotSelection.All);
        Assert.Equal(pages, result.WrittenBack);
        ZramStats after = device.GetStats();
        long cachedAfter = CachedPages(file);

        // Every page still reads back (from the file).
        var check = new byte[Page];
        Assert.Equal(NbdError.None, device.Read(123L * Page, check));
        Assert.Equal(123L, BitConverter.ToInt64(check, 0));

        long heldBefore = before.MemUsedTotal + (cachedBefore * Page);
        long heldAfter = after.MemUsedTotal + (cachedAfter * Page);
        output.WriteLine($"before: mem_used_total {before.MemUsedTotal >> 10} KiB (compr_data_size {before.ComprDataSize >> 10} KiB), file pages cached {cachedBefore}; "
            + $"after writing back {result.WrittenBack}: mem_used_total {after.MemUsedTotal >> 10} KiB, file pages cached {cachedAfter} ({cachedAfter * Page >> 10} KiB)");
        Assert.True(heldAfter < heldBefore,
            $"writing back {result.WrittenBack} pages took mem_used_total from {before.MemUsedTotal >> 10} to {after.MemUsedTotal >> 10} KiB "
            + $"(compr_data_size {before.ComprDataSize >> 10} KiB written out), but {cachedAfter} pages of the backing file "
            + $"({cachedAfter * Page >> 10} KiB) are now in the page cache: {heldBefore >> 10} KiB held for the device before, {heldAfter >> 10} KiB after");
    }

    /// <summary>Pages of <paramref name="path"/> in the page cache, from util-linux's fincore(1) (mincore over a mapping
    /// of its own; the file's flock keeps .NET's own FileStream out).</summary>
    private static long CachedPages(string path)
    {
        using var fincore = Process.Start(new ProcessStartInfo("fincore", ["--noheadings", "--output", "PAGES", path]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        string text = fincore.StandardOutput.ReadToEnd().Trim();
        string error = fincore.StandardError.ReadToEnd();
        fincore.WaitForExit();
        Assert.True(fincore.ExitCode == 0, $"fincore {path}: {error}");
        return long.Parse(text, CultureInfo.InvariantCulture);
    }
}
