using BenchmarkDotNet.Running;

namespace Zram.Benchmarks;

internal static class Program
{
    private static int Main(string[] args)
    {
        // Console modes that print figures; everything else goes to BenchmarkDotNet.
        if (args.Length > 0 && args[0] == "fragmentation")
        {
            return ZsPoolFragmentation.Run(args[1..]);
        }

        if (args.Length > 0 && args[0] == "memory")
        {
            return Device.DeviceMemoryBenchmark.Run(args[1..]);
        }

        if (args.Length > 0 && args[0] == "recompress")
        {
            return Device.RecompressionBenchmark.Run(args[1..]);
        }

        if (args.Length > 0 && args[0] == "trim")
        {
            return Device.TrimBenchmark.Run(args[1..]);
        }

        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}
