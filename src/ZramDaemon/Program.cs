namespace ZramDaemon;

internal static class Program
{
    private static int Main(string[] args)
    {
        // First, before the configuration loads: a SIGHUP in the daemon's start would end it (a verb restores it).
        Hosting.HangupSignal.Ignore();
        return Cli.ZramdCommandLine.Run(args);
    }
}
