using ZsAlloc.ZsPages;

namespace ZsAlloc;

/// <summary>
/// A read-only view of an object, from <see cref="ZsPool.MapRead"/>. While it is open the object's zspage is
/// pinned: compaction waits before it moves any object out of it. Dispose it promptly (a using statement),
/// and never call <see cref="ZsPool.Compact"/> on the thread that holds it.
/// </summary>
public unsafe ref struct ZsReadView
{
    private ZsPageDescriptor* _pinned;

    internal ZsReadView(ReadOnlySpan<byte> span, ZsPageDescriptor* pinned)
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
            // The descriptor lives in a chunk that outlives every handle of the pool.
            Interlocked.Decrement(ref _pinned->Pins);
            _pinned = null;
            Span = default;
        }
    }
}
