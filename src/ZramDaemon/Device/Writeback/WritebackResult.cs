namespace ZramDaemon.Device.Writeback;

/// <summary>What one writeback run did.</summary>
/// <param name="WrittenBack">Slots moved to the backing file.</param>
/// <param name="StoppedBy">Why the run stopped early (<see cref="WritebackOutcome.NoBudget"/> or
/// <see cref="WritebackOutcome.NoRoom"/>), or <see cref="WritebackOutcome.Skipped"/> when it went through every slot or
/// <paramref name="StoppedByTimeLimit"/>. A failed write does not stop a run (<paramref name="Failed"/>).</param>
/// <param name="StoppedByTimeLimit">The run stopped early at its time limit; another run goes on.</param>
/// <param name="StoppedByStop">The run stopped early because the daemon is stopping.</param>
/// <param name="Failed">Writes to the backing file that failed; those slots stay in memory.</param>
public readonly record struct WritebackResult(long WrittenBack, WritebackOutcome StoppedBy, bool StoppedByTimeLimit, bool StoppedByStop = false, long Failed = 0)
{
    /// <summary>The run stopped early: the daily limit is used up, or the file is full.</summary>
    public bool StoppedByLimit => StoppedBy != WritebackOutcome.Skipped;
}
