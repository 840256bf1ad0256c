using Microsoft.Extensions.Logging;

namespace ZramDaemon.Device;

internal static partial class ZramDeviceLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information,
        Message = "{Device}: {DiskSize} bytes, {Slots} slots, algorithm {Algorithm}, mem_limit {MemLimit}")]
    public static partial void Created(ILogger logger, string device, long diskSize, int slots, string algorithm, long memLimit);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug,
        Message = "{Device}: compaction ({Reason}) freed {Pages} pages in {Milliseconds:F1} ms")]
    public static partial void Compacted(ILogger logger, string device, string reason, long pages, double milliseconds);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug,
        Message = "{Device}: write refused with ENOSPC: mem_used_total {Used} would pass mem_limit {Limit} even after compaction")]
    public static partial void LimitReached(ILogger logger, string device, long used, long limit);

    [LoggerMessage(EventId = 4, Level = LogLevel.Error,
        Message = "{Device}: slot {Slot} did not decompress ({Algorithm}, {Size} bytes): stored data is corrupt")]
    public static partial void DecompressFailed(ILogger logger, string device, int slot, string algorithm, int size);

    [LoggerMessage(EventId = 5, Level = LogLevel.Error, Message = "{Device}: background compaction failed")]
    public static partial void CompactorFailed(ILogger logger, Exception exception, string device);

    [LoggerMessage(EventId = 6, Level = LogLevel.Information,
        Message = "{Device}: recompression ({Type}) stored {Pages} of {Candidates} candidate pages smaller, {Saved} bytes saved")]
    public static partial void Recompressed(ILogger logger, string device, string type, long pages, long candidates, long saved);

    [LoggerMessage(EventId = 7, Level = LogLevel.Error, Message = "{Device}: background recompression failed")]
    public static partial void RecompressorFailed(ILogger logger, Exception exception, string device);

    [LoggerMessage(EventId = 8, Level = LogLevel.Debug, Message = "{Device}: writeback ({Reason}) moved {Pages} pages to the backing file")]
    public static partial void WrittenBack(ILogger logger, string device, string reason, long pages);

    [LoggerMessage(EventId = 9, Level = LogLevel.Debug, Message = "{Device}: writeback stopped: {Reason}")]
    public static partial void WritebackStopped(ILogger logger, string device, string reason);

    [LoggerMessage(EventId = 10, Level = LogLevel.Error, Message = "{Device}: writing slot {Slot} to the backing file failed; it stays in memory ({Earlier} earlier failures not logged: one line in 10 s)")]
    public static partial void WritebackFailed(ILogger logger, Exception exception, string device, int slot, long earlier);

    [LoggerMessage(EventId = 14, Level = LogLevel.Error, Message = "{Device}: writeback run: {Failed} writes to the backing file failed (the last: {Error}); those pages stay in memory")]
    public static partial void WritebackRunFailed(ILogger logger, string device, long failed, string error);

    [LoggerMessage(EventId = 11, Level = LogLevel.Error, Message = "{Device}: slot {Slot} could not be read back from block {Block} of the backing file")]
    public static partial void ReadBackFailed(ILogger logger, Exception? exception, string device, int slot, long block);

    [LoggerMessage(EventId = 12, Level = LogLevel.Information, Message = "{Device}: recompression dictionary of {Bytes} bytes trained from {Pages} idle pages in {Milliseconds:F0} ms")]
    public static partial void DictionaryTrained(ILogger logger, string device, int bytes, int pages, double milliseconds);

    [LoggerMessage(EventId = 15, Level = LogLevel.Warning, Message = "{Device}: no room for the backing file's trailer in {Path} (a full filesystem or a quota): writeback fails until there is room, and if zramd dies the next start refuses the file until it is removed")]
    public static partial void BackingFileUnmarked(ILogger logger, string device, string path);

    [LoggerMessage(EventId = 16, Level = LogLevel.Warning, Message = "{Device}: the filesystem of {Path} cannot punch holes: a block freed there stays allocated in the file (on disk, or in RAM on ramfs) until a writeback reuses it")]
    public static partial void BackingFileNoHoles(ILogger logger, string device, string path);

    [LoggerMessage(EventId = 13, Level = LogLevel.Debug, Message = "{Device}: no recompression dictionary from {Pages} pages ({Reason}); recompressing without one")]
    public static partial void DictionaryFailed(ILogger logger, string device, int pages, string reason);
}
