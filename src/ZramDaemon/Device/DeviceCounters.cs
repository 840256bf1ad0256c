namespace ZramDaemon.Device;

/// <summary>The device's running counters (the kernel's struct zram_stats); updated with Interlocked.</summary>
internal sealed class DeviceCounters
{
    public long PagesStored;
    public long ComprDataSize;
    public long SamePages;
    public long HugePages;
    public long HugePagesSince;
    public long FailedReads;
    public long FailedWrites;
    public long InvalidIo;
    public long NotifyFree;
    public long DiscardedPages;
    public long CompactionRuns;
    public long CompactionTicks;
    public long RecompressedPages;
    public long RecompressBytesSaved;
    public long DictionaryPages;

    /// <summary>Applies the change of one slot from <paramref name="oldInfo"/> to <paramref name="newInfo"/>.</summary>
    public void Replace(uint oldInfo, uint newInfo)
    {
        var delta = default(CounterDelta);
        delta.Add(oldInfo, newInfo);
        Apply(in delta);
    }

    /// <summary>Applies summed slot changes; most writes replace a stored page with another of the same kind, so only
    /// what changed is touched.</summary>
    public void Apply(in CounterDelta delta)
    {
        AddIfNonZero(ref PagesStored, delta.Stored);
        AddIfNonZero(ref ComprDataSize, delta.Compr);
        AddIfNonZero(ref SamePages, delta.Same);
        AddIfNonZero(ref HugePages, delta.Huge);
        AddIfNonZero(ref HugePagesSince, delta.HugeSince);
        AddIfNonZero(ref DictionaryPages, delta.Dictionary);
    }

    /// <summary>Zeroes what counts events (not what describes the stored data), as a device reset does: the kernel's
    /// zram_reset_device zeroes all its stats.</summary>
    public void ResetEvents()
    {
        Interlocked.Exchange(ref HugePagesSince, 0);
        Interlocked.Exchange(ref FailedReads, 0);
        Interlocked.Exchange(ref FailedWrites, 0);
        Interlocked.Exchange(ref InvalidIo, 0);
        Interlocked.Exchange(ref NotifyFree, 0);
        Interlocked.Exchange(ref DiscardedPages, 0);
        Interlocked.Exchange(ref CompactionRuns, 0);
        Interlocked.Exchange(ref CompactionTicks, 0);
        Interlocked.Exchange(ref RecompressedPages, 0);
        Interlocked.Exchange(ref RecompressBytesSaved, 0);
    }

    private static void AddIfNonZero(ref long counter, long delta)
    {
        if (delta != 0)
        {
            Interlocked.Add(ref counter, delta);
        }
    }
}
