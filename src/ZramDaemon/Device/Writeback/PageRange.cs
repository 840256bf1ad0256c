namespace ZramDaemon.Device.Writeback;

/// <summary>The pages <see cref="Start"/> to <see cref="End"/> - 1 of a device: writeback's page_index=N (N to N + 1)
/// and page_indexes=LOW-HIGH (LOW to HIGH + 1, the kernel's inclusive range).</summary>
public readonly record struct PageRange(int Start, int End);
