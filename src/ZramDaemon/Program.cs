namespace ZramDaemon;

internal static class Program
{
    private static int Main(string[] args) => Cli.ZramdCommandLine.Run(args);
}
