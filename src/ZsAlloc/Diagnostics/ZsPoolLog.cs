using Microsoft.Extensions.Logging;

namespace ZsAlloc.Diagnostics;

internal static partial class ZsPoolLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Debug, Message = "Pool {Pool}: compaction freed {Pages} pages, moved {Objects} objects in {Milliseconds:F1} ms")]
    public static partial void Compacted(ILogger logger, string pool, long pages, long objects, double milliseconds);

    [LoggerMessage(EventId = 2, Level = LogLevel.Error, Message = "Pool {Pool}: a deferred free failed")]
    public static partial void DeferredFreeFailed(ILogger logger, string pool, Exception exception);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "Pool {Pool}: handle shrink gave back {Bytes} bytes of cells")]
    public static partial void HandlesShrunk(ILogger logger, string pool, long bytes);

    [LoggerMessage(EventId = 4, Level = LogLevel.Debug, Message = "Pool {Pool}: zspage renumbering gave back {Bytes} bytes of descriptors")]
    public static partial void ZspagesShrunk(ILogger logger, string pool, long bytes);
}
