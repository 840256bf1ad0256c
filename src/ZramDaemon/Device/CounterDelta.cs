namespace ZramDaemon.Device;

/// <summary>
/// The change to <see cref="DeviceCounters"/> that some slot changes make, summed locally and applied at once: a
/// discarded range costs one atomic add per counter it changes, not one per slot.
/// </summary>
internal struct CounterDelta
{
    public long Stored;
    public long Compr;
    public long Same;
    public long Huge;
    public long HugeSince;
    public long Dictionary;

    /// <summary>Adds the change of one slot from <paramref name="oldInfo"/> to <paramref name="newInfo"/>.</summary>
    public void Add(uint oldInfo, uint newInfo)
    {
        Stored += Written(newInfo) - Written(oldInfo);
        Compr += ObjectBytes(newInfo) - ObjectBytes(oldInfo);
        Same += Flag(newInfo, SlotInfo.Same) - Flag(oldInfo, SlotInfo.Same);
        Huge += Flag(newInfo, SlotInfo.Huge) - Flag(oldInfo, SlotInfo.Huge);
        HugeSince += Flag(newInfo, SlotInfo.Huge);
        Dictionary += SlotInfo.UsesDictionary(newInfo) - SlotInfo.UsesDictionary(oldInfo);
    }

    private static long Written(uint info) => (info & SlotInfo.Written) != 0 ? 1 : 0;

    private static long ObjectBytes(uint info) => SlotInfo.HasObject(info) ? SlotInfo.Size(info) : 0;

    private static long Flag(uint info, uint flag) => (info & flag) != 0 ? 1 : 0;
}
