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
        long stored = Stored(newInfo) - Stored(oldInfo);
        long compr = ObjectBytes(newInfo) - ObjectBytes(oldInfo);
        long same = Flag(newInfo, SlotInfo.Same) - Flag(oldInfo, SlotInfo.Same);
        long huge = Flag(newInfo, SlotInfo.Huge) - Flag(oldInfo, SlotInfo.Huge);
        long dictionary = SlotInfo.UsesDictionary(newInfo) - SlotInfo.UsesDictionary(oldInfo);
        if (dictionary != 0)
        {
            Interlocked.Add(ref DictionaryPages, dictionary);
        }
        // Most writes replace a stored page with another of the same kind: touch only what changes.
        if (stored != 0)
        {
            Interlocked.Add(ref PagesStored, stored);
        }

        if (compr != 0)
        {
            Interlocked.Add(ref ComprDataSize, compr);
        }

        if (same != 0)
        {
            Interlocked.Add(ref SamePages, same);
        }

        if (huge != 0)
        {
            Interlocked.Add(ref HugePages, huge);
        }

        if ((newInfo & SlotInfo.Huge) != 0)
        {
            Interlocked.Increment(ref HugePagesSince);
        }
    }

    /// <summary>Zeroes what counts events (not what describes the stored data), as a device reset does.</summary>
    public void ResetEvents()
    {
        Interlocked.Exchange(ref HugePagesSince, 0);
        Interlocked.Exchange(ref FailedReads, 0);
        Interlocked.Exchange(ref FailedWrites, 0);
        Interlocked.Exchange(ref InvalidIo, 0);
        Interlocked.Exchange(ref NotifyFree, 0);
        Interlocked.Exchange(ref DiscardedPages, 0);
    }

    private static long Stored(uint info) => (info & SlotInfo.Written) != 0 ? 1 : 0;

    private static long ObjectBytes(uint info) => SlotInfo.HasObject(info) ? SlotInfo.Size(info) : 0;

    private static long Flag(uint info, uint flag) => (info & flag) != 0 ? 1 : 0;
}
