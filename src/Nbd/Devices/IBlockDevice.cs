namespace Nbd.Devices;

/// <summary>
/// What the NBD server serves. Called from many connections and threads at once, so implementations are
/// thread-safe. The server validates every offset and length against <see cref="Size"/> (and payload limits)
/// before it calls in; implementations may still check, and report failures as an <see cref="NbdError"/>
/// rather than throwing, so the hot path never pays for exceptions.
/// The calls are synchronous: the devices this serves do CPU work on memory, not I/O.
/// </summary>
public interface IBlockDevice
{
    /// <summary>Size in bytes; a multiple of <see cref="MinimumBlockSize"/>.</summary>
    long Size { get; }

    bool IsReadOnly { get; }

    /// <summary>The smallest I/O the device accepts (1 or 512).</summary>
    int MinimumBlockSize { get; }

    /// <summary>The I/O size that avoids read-modify-write (4096 for zram-like devices).</summary>
    int PreferredBlockSize { get; }

    /// <summary>True when <see cref="WriteZeroes"/> with fastZero can succeed (the zeroing is cheap).</summary>
    bool SupportsFastZero { get; }

    NbdError Read(long offset, Span<byte> destination);

    /// <summary>Writes <paramref name="source"/> at <paramref name="offset"/>. Once this returns, the data
    /// is visible to every reader on every connection; <paramref name="fua"/> asks for it to be durable too.</summary>
    NbdError Write(long offset, ReadOnlySpan<byte> source, bool fua);

    NbdError Flush();

    /// <summary>Discards the range; later reads of it return zeros.</summary>
    NbdError Trim(long offset, long length);

    /// <summary>Zeroes the range. <paramref name="noHole"/>: keep it allocated. <paramref name="fastZero"/>:
    /// fail with <see cref="NbdError.NotSupported"/> rather than zero slowly.</summary>
    NbdError WriteZeroes(long offset, long length, bool noHole, bool fastZero);

    /// <summary>Fills <paramref name="extents"/> with consecutive extents starting at <paramref name="offset"/>,
    /// covering at most <paramref name="length"/> bytes, merging neighbours with the same flags. Returns how
    /// many it wrote (at least 1 when length &gt; 0 and the span is not empty).</summary>
    int GetExtents(long offset, long length, Span<BlockExtent> extents);
}
