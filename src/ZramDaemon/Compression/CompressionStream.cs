using System.Runtime.InteropServices;

namespace ZramDaemon.Compression;

/// <summary>
/// One compressor's working state, like the kernel's zcomp_strm: the library state and a two-page output
/// buffer, allocated once when the stream is created. A stream is used by one thread at a time
/// (<see cref="Compressor"/> hands them out); nothing in <see cref="Compress"/> or <see cref="Decompress"/> allocates.
/// A decoder (<see cref="CreateDecoder"/>) is a stream that only decompresses: the decompression state alone, no
/// buffer.
/// </summary>
public abstract unsafe class CompressionStream : IDisposable
{
    /// <summary>Two pages, as the kernel's zstrm->buffer: room for any compressor's worst case on one page.</summary>
    public const int BufferSize = 2 * 4096;

    private byte* _buffer;

    protected CompressionStream(bool decoder = false)
    {
        IsDecoder = decoder;
        if (!decoder)
        {
            _buffer = (byte*)NativeMemory.AlignedAlloc(BufferSize, 64);
        }
    }

    public abstract CompressionAlgorithm Algorithm { get; }

    /// <summary>True when <see cref="Decompress"/> touches none of the stream's state (LZ4's block decoder), so
    /// any number of threads may decode through one stream at once.</summary>
    public virtual bool DecodesWithoutState => false;

    /// <summary>
    /// True when the library succeeds whenever its output fits the capacity it is given (LZ4's limited-output calls):
    /// <see cref="Compress"/> then gives it just the room the caller would keep, so that it gives up early on a page
    /// that does not compress. zstd fails with dstSize_tooSmall unless it has some bytes of room past its output
    /// (8 or 9 for a page), and would store raw a page it brings just under the caller's bound.
    /// </summary>
    protected virtual bool FillsCapacityExactly => true;

    /// <summary>True for a stream made by <see cref="CreateDecoder"/>: it cannot compress.</summary>
    public bool IsDecoder { get; }

    /// <summary>
    /// A stream of the same algorithm (and dictionary) with only what <see cref="Decompress"/> needs, for a compressor
    /// whose few compression streams must not hold up reads. Only for algorithms that decode with state.
    /// </summary>
    public virtual CompressionStream CreateDecoder() => throw new NotSupportedException($"{Algorithm} decodes without state");

    /// <summary>Where <see cref="Compress"/> leaves its output; valid until the next call on this stream.</summary>
    public Span<byte> Buffer
    {
        get
        {
            ThrowIfDecoder();
            ObjectDisposedException.ThrowIf(_buffer == null, this);
            // The buffer is BufferSize bytes from AlignedAlloc and lives until Dispose.
            return new Span<byte>(_buffer, BufferSize);
        }
    }

    /// <summary>
    /// Compresses <paramref name="source"/> into <see cref="Buffer"/>. Returns the compressed length, or 0 when it
    /// would not be at most <paramref name="maxLength"/> bytes (the caller then stores the page raw).
    /// </summary>
    public int Compress(ReadOnlySpan<byte> source, int maxLength)
    {
        ThrowIfDecoder();
        ArgumentOutOfRangeException.ThrowIfGreaterThan(source.Length, BufferSize / 2, nameof(source));
        maxLength = Math.Min(maxLength, BufferSize);
        if (maxLength <= 0)
        {
            return 0;
        }

        ObjectDisposedException.ThrowIf(_buffer == null, this);
        fixed (byte* src = source)
        {
            // In bounds: _buffer holds BufferSize bytes and maxLength was clamped to it above; the compressors stop
            // (and return 0) rather than write past dstCapacity, and read srcLength bytes of the pinned source.
            // A compressor that wants room past its output gets the whole buffer (the kernel's zcomp gives two
            // pages to every one), and its result is judged by its length.
            int n = CompressCore(src, source.Length, _buffer, FillsCapacityExactly ? maxLength : BufferSize);
            return n <= maxLength ? n : 0;
        }
    }

    /// <summary>
    /// Decompresses <paramref name="source"/> into <paramref name="destination"/>; true only when the output
    /// fills <paramref name="destination"/> exactly. Never writes outside it, whatever the input holds.
    /// </summary>
    public bool Decompress(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        fixed (byte* src = source)
        fixed (byte* dst = destination)
        {
            // In bounds: each span's own length goes with its pointer, and the libraries' bounded decoders
            // (LZ4_decompress_safe, ZSTD_decompressDCtx, ZSTD_decompressBlock) read at most srcLength and write at most dstCapacity bytes.
            return DecompressCore(src, source.Length, dst, destination.Length) == destination.Length;
        }
    }

    private void ThrowIfDecoder()
    {
        if (IsDecoder)
        {
            throw new InvalidOperationException($"a {Algorithm} decoder cannot compress");
        }
    }

    /// <summary>Returns the compressed length, or 0 when it does not fit in <paramref name="dstCapacity"/>.</summary>
    protected abstract int CompressCore(byte* src, int srcLength, byte* dst, int dstCapacity);

    /// <summary>Returns the decompressed length, or -1 for malformed input.</summary>
    protected abstract int DecompressCore(byte* src, int srcLength, byte* dst, int dstCapacity);

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
        if (_buffer != null)
        {
            NativeMemory.AlignedFree(_buffer);
            _buffer = null;
        }
    }

    ~CompressionStream() => Dispose(false);
}
