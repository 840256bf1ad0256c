namespace ZramDaemon.Device;

/// <summary>The slot table, allocated whole when the device is made (as the kernel's zram_meta_alloc at disksize_store),
/// does not fit in the memory this process may have: the device's size is at fault, and the start says so.</summary>
public sealed class SlotTableTooLargeException : OutOfMemoryException
{
    public SlotTableTooLargeException()
    {
    }

    public SlotTableTooLargeException(string message)
        : base(message)
    {
    }

    public SlotTableTooLargeException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public SlotTableTooLargeException(long bytes, Exception innerException)
        : base($"not enough memory for the device's slot table ({bytes >> 20} MiB, {SlotTable.SlotSize} bytes a page)", innerException)
    {
        Bytes = bytes;
    }

    /// <summary>What the table would have taken.</summary>
    public long Bytes { get; }
}
