using Microsoft.Extensions.Logging.Abstractions;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>
/// A device with a backing file and nothing in the background: no writeback to a watermark, no compaction by watermark
/// or threshold, the compaction tick an hour away; so a test's own steps (a batch staged, a write at the limit) are the
/// only ones, and a twin made the same way meets the same.
/// </summary>
internal static class QuietBackedDevice
{
    /// <param name="memLimit">null: the smallest the device takes (one huge page's room); 0: none.</param>
    public static ZramDevice Create(string dir, string name, long diskSize = 1L << 20, long? memLimit = null, long writebackLimitPerDay = 0)
        => new(new ZramDeviceOptions
        {
            Name = name,
            DiskSize = diskSize,
            MemLimit = memLimit ?? ZramDevice.MinimumMemLimitFor(diskSize, dedup: false),
            BackingFile = Path.Combine(dir, name + ".wb"),
            WritebackLimitPerDay = writebackLimitPerDay,
            WritebackWatermarkPercent = 100,
            CompactWatermarkPercent = 100,
            CompactThresholdPages = 0,
            CompactInterval = TimeSpan.FromHours(1),
        }, NullLoggerFactory.Instance);
}
