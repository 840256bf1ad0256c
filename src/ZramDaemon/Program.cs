using System.Runtime.Versioning;

// zramd is a Linux daemon: Unix sockets, mlockall, prctl, /proc.
[assembly: SupportedOSPlatform("linux")]

namespace ZramDaemon;

internal static class Program
{
    private static int Main(string[] args) => Cli.ZramdCommandLine.Run(args);
}
