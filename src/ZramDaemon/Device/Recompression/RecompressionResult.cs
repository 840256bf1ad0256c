namespace ZramDaemon.Device.Recompression;

/// <summary>What one recompression run did.</summary>
/// <param name="Candidates">Slots the run looked at closely (matching the type, not tried before).</param>
/// <param name="Recompressed">Slots now stored smaller, with the recompression algorithm.</param>
/// <param name="BytesSaved">Compressed bytes those slots shrank by (old object sizes minus new).</param>
/// <param name="StoppedByMemLimit">The run stopped early: a new object would have passed mem_limit.</param>
/// <param name="StoppedByTimeLimit">The run stopped early at its time limit; another run goes on where it stopped
/// (the slots already dealt with are marked).</param>
/// <param name="StoppedByStop">The run stopped early, or never began, because the daemon is stopping.</param>
public readonly record struct RecompressionResult(long Candidates, long Recompressed, long BytesSaved, bool StoppedByMemLimit, bool StoppedByTimeLimit, bool StoppedByStop = false);
