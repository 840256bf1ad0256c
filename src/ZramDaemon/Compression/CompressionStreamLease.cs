namespace ZramDaemon.Compression;

/// <summary>A stream held by one thread; disposing it hands the stream back to its <see cref="Compressor"/>.</summary>
public readonly ref struct CompressionStreamLease
{
    private readonly Lock _lock;

    internal CompressionStreamLease(CompressionStream stream, Lock streamLock)
    {
        Stream = stream;
        _lock = streamLock;
    }

    public CompressionStream Stream { get; }

    public void Dispose() => _lock.Exit();
}
