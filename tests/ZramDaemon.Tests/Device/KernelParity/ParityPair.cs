using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device.KernelParity;

/// <summary>
/// Both sides of a parity test: a kernel zram device of our own and a zramd <see cref="ZramDevice"/> of the same size
/// (lz4, no background compaction to blur the figures: its interval is an hour and its threshold off), driven with
/// the same requests. What the test expects of each page is kept in <see cref="Expected"/> (null: reads as zeros).
/// </summary>
internal sealed class ParityPair : IDisposable
{
    public const int Page = ZramDevice.PageSize;

    public ParityPair(long diskSize, long memLimit = 0)
    {
        Kernel = KernelZram.Create(diskSize, memLimit);
        try
        {
            Zramd = new ZramDevice(new ZramDeviceOptions
            {
                Name = $"kpar{Kernel.Id}",
                DiskSize = diskSize,
                Algorithm = "lz4",
                MemLimit = memLimit,
                CompactInterval = TimeSpan.FromHours(1),
                CompactThresholdPages = 0,
            }, NullLoggerFactory.Instance);
        }
        catch
        {
            Kernel.Dispose();
            throw;
        }

        Expected = new byte[diskSize / Page][];
    }

    public KernelZram Kernel { get; }

    public ZramDevice Zramd { get; }

    public byte[]?[] Expected { get; }

    /// <summary>Writes the page to both; returns whether each side took it (the expectation follows the kernel's).</summary>
    public (bool Kernel, bool Zramd) TryWrite(long index, byte[] page)
    {
        bool kernel = Kernel.TryWritePage(index, page);
        NbdError error = Zramd.Write(index * Page, page, fua: false);
        if (kernel)
        {
            Expected[index] = page;
        }

        return (kernel, error == NbdError.None);
    }

    public void Write(long index, byte[] page)
    {
        (bool kernel, bool zramd) = TryWrite(index, page);
        if (!kernel || !zramd)
        {
            throw new IOException($"write of page {index}: kernel {(kernel ? "ok" : "failed")}, zramd {(zramd ? "ok" : "failed")}");
        }
    }

    public void Discard(long first, long pages)
    {
        Kernel.Discard(first, pages);
        NbdError error = Zramd.Trim(first * Page, pages * Page);
        if (error != NbdError.None)
        {
            throw new IOException($"zramd: trim of pages {first}+{pages}: {error}");
        }

        Array.Fill(Expected, null, (int)first, (int)pages);
    }

    /// <summary>Reads pages [0, count) from both; returns the indexes of the pages each side returned wrongly.</summary>
    public (List<long> Kernel, List<long> Zramd) VerifyReads(long count)
    {
        var kernelBad = new List<long>();
        var zramdBad = new List<long>();
        var page = new byte[Page];
        var zeros = new byte[Page];
        for (long index = 0; index < count; index++)
        {
            byte[] expected = Expected[index] ?? zeros;
            Kernel.ReadPage(index, page);
            if (!page.AsSpan().SequenceEqual(expected))
            {
                kernelBad.Add(index);
            }

            if (Zramd.Read(index * Page, page) != NbdError.None || !page.AsSpan().SequenceEqual(expected))
            {
                zramdBad.Add(index);
            }
        }

        return (kernelBad, zramdBad);
    }

    public ParitySnapshot Snapshot(string label) => new(label, Kernel.ReadMmStat(), Kernel.ReadIoStat(), Zramd.GetStats(), Zramd.GetPoolStats());

    public void Dispose()
    {
        try
        {
            Zramd.Dispose();
        }
        finally
        {
            Kernel.Dispose();
        }
    }
}

/// <summary>Both sides' counters at one point of a scenario.</summary>
internal sealed record ParitySnapshot(string Label, KernelMmStat Kernel, KernelIoStat KernelIo, ZramStats Zramd, ZsAlloc.ZsPoolStats ZramdPool)
{
    /// <summary>zramd's pool pages in bytes: its mem_used_total less its metadata (slot table, handles, descriptors...),
    /// the like of the kernel's mem_used_total, which counts zsmalloc's pages only.</summary>
    public long ZramdPoolBytes => Zramd.MemUsedTotal - Zramd.MetadataBytes;

    /// <summary>The peak of zramd's pool pages, in bytes: the like of the kernel's mem_used_max (peak pool pages).</summary>
    public long ZramdPoolPeakBytes => ZramdPool.PeakPages * ZramDevice.PageSize;

    public string Format()
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"== {Label}");
        text.AppendLine(CultureInfo.InvariantCulture, $"{"field",-30} {"kernel",14} {"zramd",14} {"zramd-kernel",13}");
        Row(text, "orig_data_size", Kernel.OrigDataSize, Zramd.OrigDataSize);
        Row(text, "compr_data_size", Kernel.ComprDataSize, Zramd.ComprDataSize);
        Row(text, "mem_used_total (raw)", Kernel.MemUsedTotal, Zramd.MemUsedTotal);
        Row(text, "pool bytes (zramd: less meta)", Kernel.MemUsedTotal, ZramdPoolBytes);
        Row(text, "  pool pages", Kernel.MemUsedTotal / ZramDevice.PageSize, ZramdPoolBytes / ZramDevice.PageSize);
        Row(text, "  zramd metadata_bytes", 0, Zramd.MetadataBytes);
        Row(text, "mem_limit", Kernel.MemLimit, Zramd.MemLimit);
        Row(text, "mem_used_max (raw)", Kernel.MemUsedMax, Zramd.MemUsedMax);
        Row(text, "pool peak (zramd: PeakPages)", Kernel.MemUsedMax, ZramdPoolPeakBytes);
        Row(text, "same_pages", Kernel.SamePages, Zramd.SamePages);
        Row(text, "pages_compacted", Kernel.PagesCompacted, Zramd.PagesCompacted);
        Row(text, "huge_pages", Kernel.HugePages, Zramd.HugePages);
        Row(text, "huge_pages_since", Kernel.HugePagesSince, Zramd.HugePagesSince);
        Row(text, "failed_reads", KernelIo.FailedReads, Zramd.FailedReads);
        Row(text, "failed_writes", KernelIo.FailedWrites, Zramd.FailedWrites);
        Row(text, "invalid_io (zramd: own count)", KernelIo.InvalidIo, Zramd.InvalidIo);
        Row(text, "notify_free", KernelIo.NotifyFree, Zramd.NotifyFree);
        text.AppendLine(CultureInfo.InvariantCulture, $"{"zramd deferred-free depth",-30} {string.Empty,14} {Zramd.DeferredFreeDepth,14}");
        return text.ToString();
    }

    private static void Row(StringBuilder text, string name, long kernel, long zramd)
        => text.AppendLine(CultureInfo.InvariantCulture, $"{name,-30} {kernel,14} {zramd,14} {zramd - kernel,13}");
}
