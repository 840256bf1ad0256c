namespace ZramDaemon.Device.Writeback;

/// <summary>What one writeback run did.</summary>
/// <param name="WrittenBack">Slots moved to the backing file.</param>
/// <param name="StoppedBy">Why the run stopped early (<see cref="WritebackOutcome.NoBudget"/>,
/// <see cref="WritebackOutcome.NoRoom"/> or <see cref="WritebackOutcome.IoError"/>), or
/// <see cref="WritebackOutcome.Skipped"/> when it went through every slot or <paramref name="StoppedByTimeLimit"/>.</param>
/// <param name="StoppedByTimeLimit">The run stopped early at its time limit; another run goes on.</param>
/// <param name="StoppedByStop">The run stopped early because the daemon is stopping.</param>
public readonly record struct WritebackResult(long WrittenBack, WritebackOutcome StoppedBy, bool StoppedByTimeLimit, bool StoppedByStop = false)
{
    /// <summary>The run stopped early: the daily limit is used up, the file is full, or a write failed.</summary>
    public bool StoppedByLimit => StoppedBy != WritebackOutcome.Skipped;
}
