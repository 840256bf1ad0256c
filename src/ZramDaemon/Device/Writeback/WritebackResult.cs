namespace ZramDaemon.Device.Writeback;

/// <summary>What one writeback run did.</summary>
/// <param name="WrittenBack">Slots moved to the backing file.</param>
/// <param name="StoppedByLimit">The run stopped early: the daily limit is used up, the file is full, or a write failed.</param>
/// <param name="StoppedByTimeLimit">The run stopped early at its time limit; another run goes on.</param>
public readonly record struct WritebackResult(long WrittenBack, bool StoppedByLimit, bool StoppedByTimeLimit);
