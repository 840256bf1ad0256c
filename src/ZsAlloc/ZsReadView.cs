namespace ZsAlloc;

/// <summary>
/// A read-only view of an object, from <see cref="ZsPool.MapRead"/>. While it is open the object is pinned:
/// compaction waits before it moves it (and any object sharing its pin counter, see PinTable). Dispose it promptly (a using statement),
/// and never call <see cref="ZsPool.Compact"/> on the thread that holds it.
/// </summary>
public unsafe ref struct ZsReadView
{
    private int* _pinned;

    internal ZsReadView(ReadOnlySpan<byte> span, int* pinned)
    {
        Span = span;
        _pinned = pinned;
    }

    /// <summary>The object's first bytes, straight from pool memory.</summary>
    public ReadOnlySpan<byte> Span { get; private set; }

    public void Dispose()
    {
        if (_pinned != null)
        {
            // The pin counters live as long as the pool and are never given back (PinTable).
            Interlocked.Decrement(ref *_pinned);
            _pinned = null;
            Span = default;
        }
    }
}
