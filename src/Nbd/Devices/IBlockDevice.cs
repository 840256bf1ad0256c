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

    /// <summary>The smallest I/O the device wants (1 or 512): advertised to every client as the minimum block size, and
    /// held to by those that asked for block sizes (and by all, unless <see cref="AcceptsAnyAlignment"/>).</summary>
    int MinimumBlockSize { get; }

    /// <summary>
    /// True when the device serves requests of any length and offset, however small (part of a block by
    /// read-modify-write). proto.md's default minimum block size is 1: a client that did not ask for block sizes
    /// (NBD_OPT_EXPORT_NAME, or NBD_OPT_GO without NBD_INFO_BLOCK_SIZE) may send such requests, and a device that
    /// accepts them is served them instead of answering EINVAL.
    /// </summary>
    bool AcceptsAnyAlignment => MinimumBlockSize == 1;

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
