namespace ZramDaemon;

internal static class Program
{
    private static int Main(string[] args)
    {
        Console.Error.WriteLine("zramd: the daemon is not built yet (see the open issues).");
        return args.Length == 0 ? 1 : 64;
    }
}
