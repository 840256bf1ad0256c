using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using ZramDaemon.Native;
using ZramDaemon.Tests.Daemon;

namespace ZramDaemon.Tests.Device.KernelParity;

/// <summary>
/// A kernel zram device of the test's own (hot_add), the oracle the parity tests compare zramd with: lz4, configured
/// through sysfs, written and read with O_DIRECT 4 KiB requests at page offsets (no page cache between the test and
/// the driver), discarded with blkdiscard(8). Dispose resets it and removes it (hot_remove). Never zram0, which
/// belongs to the machine.
/// </summary>
internal sealed class KernelZram : IDisposable
{
    public const string Control = "/sys/class/zram-control";
    public const string HotAdd = Control + "/hot_add";
    private const int Page = 4096;

    // O_DIRECT on Linux x86-64 and arm64 (asm-generic: 040000 octal). .NET's FileOptions have no way to ask for it
    // (0x4000 and 0x20000000 are not passed to open(2)), so the device is opened with the daemon's own open(2) import,
    // and the open file is checked to have it (/proc/self/fdinfo): a write must not stop in the page cache between
    // the test and the driver.
    private const int ODirect = 0x4000;

    private readonly byte[] _buffer = GC.AllocateArray<byte>(3 * Page, pinned: true);
    private readonly int _aligned;
    private SafeFileHandle? _handle;
    private bool _added;

    private KernelZram(int id)
    {
        Id = id;
        _added = true;
        long address = (long)Marshal.UnsafeAddrOfPinnedArrayElement(_buffer, 0);
        _aligned = (int)((Page - (address & (Page - 1))) & (Page - 1));
    }

    public int Id { get; }

    public string Sys => $"/sys/block/zram{Id}";

    public string DevicePath => $"/dev/zram{Id}";

    public long DiskSize { get; private set; }

    /// <summary>Adds a device, sets lz4 (before disksize, as the kernel requires), its size and optionally a limit.</summary>
    public static KernelZram Create(long diskSize, long memLimit = 0)
    {
        int id = int.Parse(File.ReadAllText(HotAdd).Trim(), CultureInfo.InvariantCulture);
        var zram = new KernelZram(id);
        try
        {
            if (id == 0)
            {
                // zram0 is the machine's. hot_add never hands it out while it exists; refuse to touch it regardless.
                zram._added = false;
                throw new InvalidOperationException("hot_add returned zram0, which belongs to the machine");
            }

            zram.WriteAttribute("comp_algorithm", "lz4");
            string algorithms = zram.ReadAttribute("comp_algorithm");
            if (!algorithms.Contains("[lz4]", StringComparison.Ordinal))
            {
                throw new InvalidOperationException($"zram{id} did not take lz4: comp_algorithm reads '{algorithms.Trim()}'");
            }

            zram.WriteAttribute("disksize", diskSize.ToString(CultureInfo.InvariantCulture));
            zram.DiskSize = diskSize;
            if (memLimit != 0)
            {
                zram.SetMemLimit(memLimit);
            }

            zram.Open();
            return zram;
        }
        catch
        {
            zram.Dispose();
            throw;
        }
    }

    private void Open()
    {
        int fd = Interop.Libc.Open(DevicePath, Interop.Libc.ORdWr | Interop.Libc.OCloexec | ODirect);
        if (fd < 0)
        {
            throw new IOException($"{DevicePath}: open with O_DIRECT failed: errno {Marshal.GetLastPInvokeError()}");
        }

        _handle = new SafeFileHandle(fd, ownsHandle: true);
        string fdinfo = File.ReadAllText($"/proc/self/fdinfo/{_handle.DangerousGetHandle()}");
        string flags = fdinfo.Split('\n').Single(l => l.StartsWith("flags:", StringComparison.Ordinal))["flags:".Length..].Trim();
        if ((Convert.ToInt64(flags, 8) & ODirect) == 0)
        {
            throw new InvalidOperationException($"{DevicePath} was not opened with O_DIRECT (fdinfo flags {flags})");
        }
    }

    private Span<byte> Buffer => _buffer.AsSpan(_aligned, Page);

    /// <summary>Writes one page at page <paramref name="index"/> (O_DIRECT); false if the driver failed it (EIO).</summary>
    public bool TryWritePage(long index, ReadOnlySpan<byte> page) => TryWriteAt(index * Page, page);

    /// <summary>Writes 4096 bytes at <paramref name="offset"/>; false if the write failed (any I/O error).</summary>
    public bool TryWriteAt(long offset, ReadOnlySpan<byte> page)
    {
        page.CopyTo(Buffer);
        try
        {
            RandomAccess.Write(_handle!, Buffer, offset);
            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }

    public void WritePage(long index, ReadOnlySpan<byte> page)
    {
        if (!TryWritePage(index, page))
        {
            throw new IOException($"{DevicePath}: write of page {index} failed");
        }
    }

    /// <summary>Reads one page at page <paramref name="index"/> (O_DIRECT) into <paramref name="destination"/>.</summary>
    public void ReadPage(long index, Span<byte> destination)
    {
        int n = ReadAt(index * Page);
        if (n != Page)
        {
            throw new IOException($"{DevicePath}: read of page {index} returned {n} bytes");
        }

        Buffer.CopyTo(destination);
    }

    /// <summary>Reads up to a page at <paramref name="offset"/>: the byte count (0 at the end of the device); throws on errors.</summary>
    public int ReadAt(long offset) => RandomAccess.Read(_handle!, Buffer, offset);

    /// <summary>Discards <paramref name="pages"/> pages from page <paramref name="first"/> with blkdiscard(8) (BLKDISCARD).</summary>
    public void Discard(long first, long pages)
    {
        ClientTool.Result result = ClientTool.Run("blkdiscard", ["-o", (first * Page).ToString(CultureInfo.InvariantCulture), "-l", (pages * Page).ToString(CultureInfo.InvariantCulture), DevicePath]);
        if (result.ExitCode != 0)
        {
            throw new IOException($"blkdiscard of pages {first}+{pages} on {DevicePath}: exit {result.ExitCode}: {result.Stderr.Trim()}");
        }
    }

    public void Compact() => WriteAttribute("compact", "1");

    public void SetMemLimit(long bytes) => WriteAttribute("mem_limit", bytes.ToString(CultureInfo.InvariantCulture));

    /// <summary>mem_used_max: writing 0 resets it to the current mem_used_total (the only value the kernel takes).</summary>
    public void ResetMemUsedMax() => WriteAttribute("mem_used_max", "0");

    public KernelMmStat ReadMmStat() => KernelMmStat.Parse(ReadAttribute("mm_stat"));

    public KernelIoStat ReadIoStat() => KernelIoStat.Parse(ReadAttribute("io_stat"));

    /// <summary>The io_stat line as sysfs shows it, without its newline.</summary>
    public string ReadIoStatLine() => ReadAttribute("io_stat").TrimEnd('\n');

    public string ReadMmStatLine() => ReadAttribute("mm_stat").TrimEnd('\n');

    public string ReadAttribute(string name) => File.ReadAllText($"{Sys}/{name}");

    public void WriteAttribute(string name, string value) => File.WriteAllText($"{Sys}/{name}", value);

    /// <summary>zram's reset: the data and counters go, and disksize becomes 0 (<see cref="Reinit"/> sets it up again).</summary>
    public void Reset()
    {
        _handle?.Dispose();
        _handle = null;
        WhileBusy(() => WriteAttribute("reset", "1"));
    }

    /// <summary>After <see cref="Reset"/>: lz4 and the same disksize again, as a user of the kernel's zram must.</summary>
    public void Reinit()
    {
        WriteAttribute("comp_algorithm", "lz4");
        WriteAttribute("disksize", DiskSize.ToString(CultureInfo.InvariantCulture));
        Open();
    }

    public void Dispose()
    {
        _handle?.Dispose();
        _handle = null;
        if (!_added)
        {
            return;
        }

        _added = false;
        try
        {
            WhileBusy(() => WriteAttribute("reset", "1"));
        }
        finally
        {
            WhileBusy(() => File.WriteAllText($"{Control}/hot_remove", Id.ToString(CultureInfo.InvariantCulture)));
        }
    }

    /// <summary>The numbers of a sysfs stat line (<paramref name="name"/>), at least <paramref name="count"/> of them.</summary>
    internal static long[] Fields(string line, int count, string name)
    {
        long[] fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(s => long.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        return fields.Length >= count ? fields : throw new FormatException($"{name} has {fields.Length} fields, not {count}: '{line.Trim()}'");
    }

    /// <summary>Runs a reset or hot_remove, again while the kernel answers EBUSY: closing our descriptor of the device
    /// wakes udev, whose probe (blkid) holds it open for a moment, and the kernel refuses both while anyone has it open.</summary>
    private static void WhileBusy(Action action)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                action();
                return;
            }
            catch (IOException) when (attempt < 100)
            {
                Thread.Sleep(50);
            }
        }
    }
}

/// <summary>/sys/block/zramN/mm_stat, as Documentation/admin-guide/blockdev/zram.rst lists its fields.</summary>
internal sealed record KernelMmStat(
    long OrigDataSize, long ComprDataSize, long MemUsedTotal, long MemLimit, long MemUsedMax,
    long SamePages, long PagesCompacted, long HugePages, long HugePagesSince)
{
    public static KernelMmStat Parse(string line)
    {
        long[] f = KernelZram.Fields(line, 9, "mm_stat");
        return new KernelMmStat(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]);
    }
}

/// <summary>/sys/block/zramN/io_stat: failed_reads failed_writes invalid_io notify_free (invalid_io is a literal 0 since 6.4).</summary>
internal sealed record KernelIoStat(long FailedReads, long FailedWrites, long InvalidIo, long NotifyFree)
{
    public static KernelIoStat Parse(string line)
    {
        long[] f = KernelZram.Fields(line, 4, "io_stat");
        return new KernelIoStat(f[0], f[1], f[2], f[3]);
    }
}
