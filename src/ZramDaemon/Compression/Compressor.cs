namespace ZramDaemon.Compression;

/// <summary>
/// A device's compressor: one <see cref="CompressionStream"/> per CPU, all created up front, like the
/// kernel's per-CPU zcomp streams. A caller takes the stream of the CPU it runs on (or any free one) for the
/// length of one page's work, so two requests never share state and no request allocates. A compressor with fewer
/// streams (the recompressor's: one thread compresses, and a high-level zstd context is large) can be given decoders
/// of its own, one per CPU, so that reads of its pages neither wait for its streams nor for each other.
/// </summary>
public sealed class Compressor : IDisposable
{
    private readonly CompressionStream[] _streams;
    private readonly Lock[] _locks;

    /// <summary>Where <see cref="Decompress"/> decodes: the streams themselves, or decoders of their own.</summary>
    private readonly CompressionStream[] _decoders;
    private readonly Lock[] _decoderLocks;

    /// <param name="streamCount">Compression streams (0: one per CPU).</param>
    /// <param name="decoderCount">Decoders of their own for <see cref="Decompress"/> (0: it takes a stream); none for
    /// an algorithm that decodes without state.</param>
    public Compressor(CompressionSpec spec, int streamCount = 0, int decoderCount = 0)
        : this(spec, () => CreateStream(spec), streamCount, decoderCount)
    {
    }

    public Compressor(string algorithm)
        : this(CompressionSpec.Parse(algorithm))
    {
    }

    /// <summary>zstd at the dictionary's level with <paramref name="dictionary"/> (which must outlive this).</summary>
    public Compressor(ZstdDictionary dictionary, int streamCount = 0, int decoderCount = 0)
        : this(
            new CompressionSpec(CompressionAlgorithm.Zstd, (dictionary ?? throw new ArgumentNullException(nameof(dictionary))).Level),
            () => new ZstdDictionaryCompressionStream(dictionary),
            streamCount,
            decoderCount)
    {
    }

    private Compressor(CompressionSpec spec, Func<CompressionStream> createStream, int streamCount, int decoderCount)
    {
        Spec = spec;
        int count = streamCount > 0 ? streamCount : Environment.ProcessorCount;
        _streams = new CompressionStream[count];
        _locks = new Lock[count];
        _decoders = _streams;
        _decoderLocks = _locks;
        try
        {
            for (int i = 0; i < count; i++)
            {
                _streams[i] = createStream();
                _locks[i] = new Lock();
            }

            if (decoderCount > 0 && !_streams[0].DecodesWithoutState)
            {
                _decoders = new CompressionStream[decoderCount];
                _decoderLocks = new Lock[decoderCount];
                for (int i = 0; i < decoderCount; i++)
                {
                    _decoders[i] = _streams[0].CreateDecoder();
                    _decoderLocks[i] = new Lock();
                }
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public CompressionSpec Spec { get; }

    /// <summary>What slots record for this compressor's output (with a dictionary: <see cref="CompressionAlgorithm.ZstdDictionary"/>).</summary>
    public CompressionAlgorithm Algorithm => _streams[0].Algorithm;

    public static CompressionStream CreateStream(CompressionSpec spec) => spec.Algorithm switch
    {
        CompressionAlgorithm.Lz4 => new Lz4CompressionStream(spec.Level),
        CompressionAlgorithm.Lz4Hc => new Lz4HcCompressionStream(spec.Level),
        CompressionAlgorithm.Zstd => new ZstdCompressionStream(spec.Level),
        _ => throw new ArgumentOutOfRangeException(nameof(spec), spec.Algorithm, "unknown compression algorithm"),
    };

    /// <summary>Takes a stream for this thread; dispose the lease to give it back.</summary>
    public CompressionStreamLease Acquire() => Take(_streams, _locks);

    /// <summary>This CPU's stream of <paramref name="streams"/>, or any free one, or waits for this CPU's.</summary>
    private static CompressionStreamLease Take(CompressionStream[] streams, Lock[] locks)
    {
        int count = streams.Length;
        int home = Thread.GetCurrentProcessorId() % count;
        // Another thread may hold this CPU's stream (preempted, or more threads than CPUs): try the others
        // before waiting, as zcomp_stream_get would migrate.
        for (int i = 0; i < count; i++)
        {
            int index = home + i < count ? home + i : home + i - count;
            if (locks[index].TryEnter())
            {
                return new CompressionStreamLease(streams[index], locks[index]);
            }
        }

        locks[home].Enter();
        return new CompressionStreamLease(streams[home], locks[home]);
    }

    /// <summary>Compresses one page into <paramref name="destination"/>; returns the length, or 0 if it does not fit.</summary>
    public int Compress(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        using CompressionStreamLease lease = Acquire();
        int n = lease.Stream.Compress(source, destination.Length);
        if (n > 0)
        {
            lease.Stream.Buffer[..n].CopyTo(destination);
        }

        return n;
    }

    /// <summary>True when <paramref name="source"/> decodes to exactly <paramref name="destination"/>.Length bytes.</summary>
    public bool Decompress(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        // LZ4 decodes without state: no stream to take, so a read never waits for a thread that holds one
        // (with more serving threads than CPUs, a holder is often preempted).
        CompressionStream first = _streams[0];
        if (first.DecodesWithoutState)
        {
            return first.Decompress(source, destination);
        }

        using CompressionStreamLease lease = Take(_decoders, _decoderLocks);
        return lease.Stream.Decompress(source, destination);
    }

    public void Dispose()
    {
        foreach (CompressionStream? stream in _streams)
        {
            stream?.Dispose();
        }

        if (_decoders != _streams)
        {
            foreach (CompressionStream? decoder in _decoders)
            {
                decoder?.Dispose();
            }
        }
    }
}
