namespace ZramDaemon.Device.Recompression;

/// <summary>Which slots a recompression takes, as zram's recompress "type=" parameter.</summary>
public enum RecompressionType
{
    /// <summary>Every slot holding a pool object that was not recompressed (or found not to shrink) before.</summary>
    All,

    /// <summary>Slots idle since the last idle marking (<see cref="ZramDevice.MarkIdle"/>, or the background aging).</summary>
    Idle,

    /// <summary>Huge slots: pages the primary algorithm could not shrink below the pool's huge class size.</summary>
    Huge,
}
