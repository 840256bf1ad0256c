using System.Runtime.InteropServices;
using ZramDaemon.Compression.Native;

namespace ZramDaemon.Compression;

/// <summary>
/// A zstd dictionary trained from a device's own pages (ZDICT_trainFromBuffer), as kernel zram's zstd
/// "algorithm_params dict=" but trained in place: small pages compress much better with a dictionary of what such
/// pages usually hold. It keeps the dictionary, a digested copy for decompression (shared by every reader, read-only)
/// and, while recompression works, one for compression at <see cref="Level"/> (its hash tables cost megabytes at
/// higher levels, so <see cref="ReleaseCompressionTables"/> drops it between passes). Compression and that release
/// are called by one thread at a time (the device's recompression lock); decompression by any number.
/// </summary>
public sealed unsafe class ZstdDictionary : IDisposable
{
    private byte* _content;
    private nint _ddict;
    private nint _cdict;
    private long _tablesBytes;

    // Measured when made: MemoryBytes is read by any thread at any time (every write under a limit), and must not
    // call zstd on a handle another thread may be freeing (ReleaseCompressionTables, Dispose).
    private readonly long _ddictBytes;

    private ZstdDictionary(byte* content, int size, int level, nint ddict)
    {
        _content = content;
        Size = size;
        Level = level;
        _ddict = ddict;
        _ddictBytes = (long)Interop.Zstd.SizeofDDict(ddict);
    }

    /// <summary>The dictionary's own size in bytes.</summary>
    public int Size { get; }

    /// <summary>The zstd level pages are compressed at with it.</summary>
    public int Level { get; }

    /// <summary>What it holds in memory now: the dictionary, the decompression copy and, while held, the compression one.</summary>
    public long MemoryBytes => Size + _ddictBytes + (HasCompressionTables ? Volatile.Read(ref _tablesBytes) : 0);

    internal nint DDict => _ddict;

    /// <summary>Whether the compression tables are held now.</summary>
    public bool HasCompressionTables => Volatile.Read(ref _cdict) != 0;

    /// <summary>What the compression tables cost: as measured when last made, zstd's estimate until then (which also
    /// counts a copy of the dictionary, so it errs high). The device asks whether they fit under its limit first.</summary>
    public long CompressionTablesBytes
        => _tablesBytes != 0 ? _tablesBytes : (long)Interop.Zstd.EstimateCDictSize((nuint)Size, Level);

    /// <summary>
    /// Trains a dictionary of at most <paramref name="capacity"/> bytes from <paramref name="sampleCount"/> pages of
    /// <paramref name="pageSize"/> bytes laid end to end in <paramref name="samples"/>. Returns null with the reason
    /// when zstd cannot (too few or too uniform samples).
    /// </summary>
    public static ZstdDictionary? Train(ReadOnlySpan<byte> samples, int pageSize, int sampleCount, int capacity, int level, out string? error)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pageSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        ArgumentOutOfRangeException.ThrowIfGreaterThan((long)sampleCount * pageSize, samples.Length, nameof(sampleCount));
        var sizes = new nuint[sampleCount];
        Array.Fill(sizes, (nuint)pageSize);
        byte* content = (byte*)NativeMemory.Alloc((nuint)capacity);
        nuint n;
        fixed (byte* src = samples)
        fixed (nuint* sizesPtr = sizes)
        {
            // samples holds sampleCount * pageSize bytes (checked above); content holds capacity bytes.
            n = Interop.Zstd.TrainFromBuffer(content, (nuint)capacity, src, sizesPtr, (uint)sampleCount);
        }

        if (Interop.Zstd.DictIsError(n) != 0)
        {
            NativeMemory.Free(content);
            error = Marshal.PtrToStringAnsi((nint)Interop.Zstd.DictErrorName(n)) ?? "zstd could not train a dictionary";
            return null;
        }

        if (n < (nuint)capacity)
        {
            // Hold what Size says (and mem_used_total counts), not the capacity asked for.
            content = (byte*)NativeMemory.Realloc(content, n);
        }

        // By reference: the dictionary's bytes are kept here anyway (for the compression tables), a second copy
        // would cost its size again for as long as any slot uses it.
        nint ddict = Interop.Zstd.CreateDDictByReference(content, n);
        if (ddict == 0)
        {
            NativeMemory.Free(content);
            error = "zstd could not digest the dictionary";
            return null;
        }

        error = null;
        return new ZstdDictionary(content, (int)n, level, ddict);
    }

    /// <summary>
    /// Pages to train from, in native memory (megabytes, for the training only: not kept by the GC's heap), one
    /// <see cref="PageSize"/> after another.
    /// </summary>
    public sealed class Samples : IDisposable
    {
        private byte* _pages;

        public Samples(int capacity, int pageSize)
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pageSize);
            Capacity = capacity;
            PageSize = pageSize;
            _pages = (byte*)NativeMemory.Alloc((nuint)capacity * (nuint)pageSize);
        }

        public int Capacity { get; }

        public int PageSize { get; }

        /// <summary>Pages filled so far (by <see cref="Add"/>).</summary>
        public int Count { get; private set; }

        /// <summary>The next free page, which <see cref="Add"/> then keeps; fill it first.</summary>
        public Span<byte> Next
        {
            get
            {
                ObjectDisposedException.ThrowIf(_pages == null, this);
                ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(Count, Capacity);
                // In bounds: Count < Capacity, and the buffer holds Capacity pages.
                return new Span<byte>(_pages + ((long)Count * PageSize), PageSize);
            }
        }

        /// <summary>Keeps the page <see cref="Next"/> was filled into.</summary>
        public void Add() => Count = Math.Min(Count + 1, Capacity);

        /// <summary>The pages kept, end to end.</summary>
        public ReadOnlySpan<byte> Filled => _pages == null ? default : new ReadOnlySpan<byte>(_pages, Count * PageSize);

        public void Dispose()
        {
            if (_pages != null)
            {
                NativeMemory.Free(_pages);
                _pages = null;
            }
        }
    }

    /// <summary>The digested dictionary for compression, made on first use after a release (the device makes it
    /// before a slice, so that its memory is judged before anything uses it).</summary>
    internal nint CompressionTables()
    {
        ObjectDisposedException.ThrowIf(_content == null, this);
        if (_cdict == 0)
        {
            nint cdict = Interop.Zstd.CreateCDictByReference(_content, (nuint)Size, Level);
            if (cdict == 0)
            {
                throw new OutOfMemoryException("zstd could not digest the dictionary for compression.");
            }

            // Before the handle is published: MemoryBytes counts _tablesBytes once it sees the handle.
            Volatile.Write(ref _tablesBytes, (long)Interop.Zstd.SizeofCDict(cdict));
            Volatile.Write(ref _cdict, cdict);
        }

        return _cdict;
    }

    /// <summary>Frees the compression tables (recompression is done for now); decompression keeps working.</summary>
    public void ReleaseCompressionTables()
    {
        nint cdict = Interlocked.Exchange(ref _cdict, 0);
        if (cdict != 0)
        {
            Interop.Zstd.FreeCDict(cdict);
        }
    }

    public void Dispose()
    {
        ReleaseCompressionTables();
        if (_ddict != 0)
        {
            Interop.Zstd.FreeDDict(_ddict);
            _ddict = 0;
        }

        if (_content != null)
        {
            NativeMemory.Free(_content);
            _content = null;
        }
    }
}
