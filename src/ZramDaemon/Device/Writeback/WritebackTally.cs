namespace ZramDaemon.Device.Writeback;

/// <summary>What a writeback run's batches came to so far.</summary>
internal struct WritebackTally
{
    /// <summary>Slots written back.</summary>
    public long Written;

    /// <summary>Writes the backing file failed (those slots stay in memory).</summary>
    public long Failed;

    /// <summary>Bytes of the objects written back (what the pool freed).</summary>
    public long Freed;
}
