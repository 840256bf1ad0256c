using System.Runtime.CompilerServices;
namespace ZramDaemon.Compression;

/// <summary>
/// A device's compressor: one <see cref="CompressionStream"/> per CPU created up front, like the kernel's
/// per-CPU zcomp streams. A caller takes the stream of the CPU it runs on (or any free one) for the length of one
/// page's work, so two requests never share state. Unlike the kernel's, a holder here can be preempted (four
/// serving threads a connection on two CPUs often are), and the others then waited for it (a .NET Lock wait and
/// wake-up for a page's compression, measured in the 128 KiB write profile); so when every stream is taken a
/// new one is created instead, up to <see cref="StreamsPerCpu"/> a CPU. They stay: after the first busy moments
/// no request allocates. With an explicit stream count the set is fixed.
/// </summary>
public sealed class Compressor : IDisposable
{
    /// <summary>The most streams a default compressor grows to, per CPU.</summary>
    public const int StreamsPerCpu = 4;

    // Created up to _count (published with a volatile write after the stream is in place); the locks all exist
    // from the start, so a lock never changes under a holder.
    private readonly CompressionStream?[] _streams;
    private readonly Lock[] _locks;
    private readonly Func<CompressionStream>? _grow;
    private readonly Lock _growLock = new();
    private int _count;

    public Compressor(CompressionSpec spec, int streamCount = 0)
        : this(spec, () => CreateStream(spec), streamCount)
    {
    }

    private Compressor(CompressionSpec spec, Func<CompressionStream> create, int streamCount)
    {
        Spec = spec;
        int count = streamCount > 0 ? streamCount : Environment.ProcessorCount;
        int capacity = streamCount > 0 ? streamCount : StreamsPerCpu * Environment.ProcessorCount;
        _grow = capacity > count ? create : null;
        _streams = new CompressionStream?[capacity];
        _locks = new Lock[capacity];
        for (int i = 0; i < capacity; i++)
        {
            _locks[i] = new Lock();
        }

        try
        {
            for (int i = 0; i < count; i++)
            {
                _streams[i] = create();
                _count = i + 1;
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public Compressor(string algorithm)
        : this(CompressionSpec.Parse(algorithm))
    {
    }

    /// <summary>zstd at the dictionary's level with <paramref name="dictionary"/> (which must outlive this).</summary>
    public Compressor(ZstdDictionary dictionary, int streamCount = 0)
        : this(
            new CompressionSpec(CompressionAlgorithm.Zstd, (dictionary ?? throw new ArgumentNullException(nameof(dictionary))).Level),
            () => new ZstdDictionaryCompressionStream(dictionary),
            streamCount)
    {
    }

    public CompressionSpec Spec { get; }

    /// <summary>What slots record for this compressor's output (with a dictionary: <see cref="CompressionAlgorithm.ZstdDictionary"/>).</summary>
    public CompressionAlgorithm Algorithm => _streams[0]!.Algorithm;

    public static CompressionStream CreateStream(CompressionSpec spec) => spec.Algorithm switch
    {
        CompressionAlgorithm.Lz4 => new Lz4CompressionStream(spec.Level),
        CompressionAlgorithm.Lz4Hc => new Lz4HcCompressionStream(spec.Level),
        CompressionAlgorithm.Zstd => new ZstdCompressionStream(spec.Level),
        _ => throw new ArgumentOutOfRangeException(nameof(spec), spec.Algorithm, "unknown compression algorithm"),
    };

    /// <summary>Takes a stream for this thread; dispose the lease to give it back.</summary>
    public CompressionStreamLease Acquire()
    {
        int count = Volatile.Read(ref _count);
        int home = Thread.GetCurrentProcessorId() % count;
        // Another thread may hold this CPU's stream (preempted, or more threads than CPUs): try the others
        // before waiting, as zcomp_stream_get would migrate.
        for (int i = 0; i < count; i++)
        {
            int index = home + i < count ? home + i : home + i - count;
            if (_locks[index].TryEnter())
            {
                return new CompressionStreamLease(_streams[index]!, _locks[index]);
            }
        }

        return AcquireBusy(home);
    }

    /// <summary>Every stream was taken: a new one while there is room for it, else wait for this CPU's.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private CompressionStreamLease AcquireBusy(int home)
    {
        if (_grow is not null)
        {
            lock (_growLock)
            {
                int count = _count;
                if (count < _streams.Length)
                {
                    CompressionStream? stream = null;
                    try
                    {
                        stream = _grow();
                    }
                    catch (OutOfMemoryException)
                    {
                        // No memory for another stream's state: wait for one of those there are.
                    }

                    if (stream is not null)
                    {
                        // Taken before it is published, so no other thread can have it first.
                        _locks[count].Enter();
                        _streams[count] = stream;
                        Volatile.Write(ref _count, count + 1);
                        return new CompressionStreamLease(stream, _locks[count]);
                    }
                }
            }
        }

        _locks[home].Enter();
        return new CompressionStreamLease(_streams[home]!, _locks[home]);
    }

    /// <summary>Streams created so far (the CPUs' at the start; more after moments when all were busy).</summary>
    public int StreamCount => Volatile.Read(ref _count);

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
        CompressionStream first = _streams[0]!;
        if (first.DecodesWithoutState)
        {
            return first.Decompress(source, destination);
        }

        using CompressionStreamLease lease = Acquire();
        return lease.Stream.Decompress(source, destination);
    }

    public void Dispose()
    {
        foreach (CompressionStream? stream in _streams)
        {
            stream?.Dispose();
        }
    }
}
