namespace ZramDaemon.Device.Writeback;

/// <summary>What happened to one slot offered to the writeback.</summary>
public enum WritebackOutcome
{
    /// <summary>Not a candidate (no pool object, not of the type or class asked for, or its lock was taken).</summary>
    Skipped,

    /// <summary>The object is in the backing file now, and its pool memory free.</summary>
    WrittenBack,

    /// <summary>The daily writeback limit is used up.</summary>
    NoBudget,

    /// <summary>Every block of the backing file is in use.</summary>
    NoRoom,

    /// <summary>The filesystem failed the write; the slot stays in memory.</summary>
    IoError,
}
