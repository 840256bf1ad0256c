using BenchmarkDotNet.Attributes;
using ZsAlloc;

namespace Zram.Benchmarks;

/// <summary>
/// The pool's hot paths on typical LZ4 sizes of 4 KiB pages (about 600, 1800 and 3000 bytes): each invocation is
/// one operation on one object, 64K invocations an iteration; the Allocated column must read 0 B.
/// </summary>
[MemoryDiagnoser]
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 10, invocationCount: Batch)]
public class ZsPoolBenchmarks
{
    private const int Batch = 1 << 16;

    private readonly byte[] _payload = new byte[ZsPool.MaxObjectSize];
    private readonly byte[] _buffer = new byte[ZsPool.MaxObjectSize];
    private readonly uint[] _handles = new uint[Batch];
    private readonly uint[] _resident = new uint[Batch];
    private ZsPool _pool = null!;
    private int _next;
    private int _count;

    [Params(600, 1800, 3000)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        new Random(1).NextBytes(_payload);
        _pool = new ZsPool();
        for (int i = 0; i < _resident.Length; i++)
        {
            _resident[i] = _pool.Malloc(Size);
            _pool.Write(_resident[i], _payload.AsSpan(0, Size));
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _pool.Dispose();

    [IterationSetup(Targets = [nameof(AllocWrite), nameof(Read), nameof(MapRead)])]
    public void StartEmpty()
    {
        _next = 0;
        _count = 0;
    }

    [IterationCleanup(Target = nameof(AllocWrite))]
    public void FreeAllocated()
    {
        for (int i = 0; i < _count; i++)
        {
            _pool.Free(_handles[i]);
        }
    }

    [IterationSetup(Targets = [nameof(Free), nameof(FreeDeferred)])]
    public void Fill()
    {
        for (int i = 0; i < _handles.Length; i++)
        {
            _handles[i] = _pool.Malloc(Size);
            _pool.Write(_handles[i], _payload.AsSpan(0, Size));
        }

        _next = 0;
    }

    [IterationCleanup(Target = nameof(FreeDeferred))]
    public void Flush() => _pool.FlushDeferred();

    [Benchmark(Description = "Malloc+Write")]
    public void AllocWrite()
    {
        uint handle = _pool.Malloc(Size);
        _pool.Write(handle, _payload.AsSpan(0, Size));
        _handles[_count++] = handle;
    }

    [Benchmark]
    public void Read() => _pool.Read(_resident[_next++ & (Batch - 1)], _buffer.AsSpan(0, Size));

    [Benchmark]
    public byte MapRead()
    {
        using ZsReadView view = _pool.MapRead(_resident[_next++ & (Batch - 1)], Size, _buffer);
        return view.Span[^1];
    }

    [Benchmark]
    public void Free() => _pool.Free(_handles[_next++]);

    [Benchmark]
    public void FreeDeferred() => _pool.FreeDeferred(_handles[_next++]);
}
