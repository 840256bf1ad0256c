using BenchmarkDotNet.Attributes;
using ZsAlloc.SizeClasses;

namespace Zram.Benchmarks;

[MemoryDiagnoser]
public class SizeClassBenchmarks
{
    private readonly SizeClassTable _table = new();

    [Benchmark]
    public int ClassLookup()
    {
        int sum = 0;
        for (int size = 1; size <= 4096; size += 7)
        {
            sum += _table.ClassIndexFor(size);
        }

        return sum;
    }
}
