namespace ZramDaemon.Device;

/// <summary>Which slots a recompression or a writeback takes, as zram's recompress and writeback "type=".</summary>
public enum SlotSelection
{
    /// <summary>Every slot holding a pool object (for recompression: not recompressed, or found not to shrink, before).</summary>
    All,

    /// <summary>Slots idle since the last idle marking (<see cref="ZramDevice.MarkIdle"/>, or the background aging).</summary>
    Idle,

    /// <summary>Huge slots: pages the primary algorithm could not shrink below the pool's huge class size.</summary>
    Huge,

    /// <summary>Slots both huge and idle (zram's huge_idle).</summary>
    HugeIdle,

    /// <summary>
    /// Huge slots recompression tried and could not shrink either (zram's ZRAM_INCOMPRESSIBLE, writeback's
    /// type=incompressible): they stay raw in the pool whatever is tried. Writeback only; recompression takes none.
    /// </summary>
    Incompressible,
}
