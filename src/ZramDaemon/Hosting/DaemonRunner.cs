using Microsoft.Extensions.Logging;
using Serilog.Extensions.Logging;
using ZramDaemon.Configuration;
using ZramDaemon.Logging;

namespace ZramDaemon.Hosting;

/// <summary>
/// <c>zramd</c> without a verb: validate the whole configuration first (nothing starts half-configured), then
/// run the host until SIGTERM.
/// </summary>
internal static class DaemonRunner
{
    public static int Run(CommandLineSettings flags)
    {
        SystemFacts facts = SystemFacts.Current();
        ZramdConfiguration config;
        try
        {
            config = ConfigurationLoader.Load(flags, facts);
        }
        catch (ConfigurationException e)
        {
            Console.Error.WriteLine($"zramd: {e.Message}");
            return e.ExitCode;
        }

        using Serilog.Core.Logger serilog = DaemonLogging.Create(config.LogLevel, facts.Environment);
        using var loggerFactory = new SerilogLoggerFactory(serilog);
        ILogger logger = loggerFactory.CreateLogger("zramd");
        ConfigurationReport.Log(logger, config);
        LogNotServing(logger);
        return ExitCodes.Failure;
    }

    private static void LogNotServing(ILogger logger) =>
        logger.LogError("the configuration is valid, but this build has no NBD server or device yet: nothing is served");
}
