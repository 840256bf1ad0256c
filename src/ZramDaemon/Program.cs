using ZramDaemon.Attach;

namespace ZramDaemon;

internal static class Program
{
    private static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] is "attach" or "detach")
        {
            return AttachCommand.Run(args, Console.Out, Console.Error);
        }

        Console.Error.WriteLine("zramd: the daemon is not built yet (see the open issues).");
        return args.Length == 0 ? 1 : 64;
    }
}
