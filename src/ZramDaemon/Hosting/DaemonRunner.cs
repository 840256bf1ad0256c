using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Serilog.Extensions.Logging;
using ZramDaemon.Configuration;
using ZramDaemon.Logging;
using ZramDaemon.Systemd;

namespace ZramDaemon.Hosting;

/// <summary>
/// <c>zramd</c> without a verb. Order matters: mark the process as an I/O flusher before any thread exists
/// (threads inherit it), validate the whole configuration (nothing starts half-configured: exit 78), lock
/// memory, then run the generic host until SIGTERM (exit 0) or a failure to start (exit 1; 78 for a configuration
/// error only the start can see, a writeback-file another process holds or zramd cannot open).
/// </summary>
internal static partial class DaemonRunner
{
    public static int Run(CommandLineSettings flags)
    {
        string? ioFlusherFailure = SwapSafety.MarkProcessAsIoFlusher();
        SystemFacts facts = SystemFacts.Current();
        ZramdConfiguration config;
        try
        {
            config = ConfigurationLoader.Load(flags, facts);
        }
        catch (ConfigurationException e)
        {
            DaemonLogging.WriteError($"zramd: {e.Message}", facts.Environment);
            return e.ExitCode;
        }

        var level = new Serilog.Core.LoggingLevelSwitch(config.LogLevel);
        using Serilog.Core.Logger serilog = DaemonLogging.Create(level, facts.Environment);
        using var loggerFactory = new SerilogLoggerFactory(serilog);
        ILogger logger = loggerFactory.CreateLogger("zramd");
        ConfigurationReport.Log(logger, config);
        SwapSafety.Apply(config, facts.IsRoot, ioFlusherFailure, logger);

        using var notifier = new SystemdNotifier(facts.Environment);
        HostApplicationBuilder builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddSingleton<ILoggerFactory>(loggerFactory);
        builder.Services.AddSingleton(typeof(ILogger<>), typeof(Logger<>));
        builder.Services.AddSingleton(config);

        // SIGHUP, held since Main, reloads once zramd serves (ZramdService): the configuration read as above.
        builder.Services.AddSingleton(new ConfigurationReload(() => ConfigurationLoader.Load(flags, SystemFacts.Current()), config, level, logger));
        builder.Services.AddSingleton(notifier);
        builder.Services.AddHostedService<ZramdService>();
        builder.Services.Configure<ConsoleLifetimeOptions>(o => o.SuppressStatusMessages = true);

        // Longer than ZramdService's own grace for requests in flight, so the host never cuts the drain short.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(30));
        try
        {
            using IHost host = builder.Build();
            host.Run();
            return ExitCodes.Success;
        }
        catch (ConfigurationException e)
        {
            // One only the start can see (a writeback-file another process holds or zramd cannot open): one line, as the others.
            notifier.Notify("STATUS=failed to start: " + e.Message);
            DaemonLogging.WriteError($"zramd: {e.Message}", facts.Environment);
            return e.ExitCode;
        }
        catch (Exception e) when (e is DaemonStartException or IOException or System.Net.Sockets.SocketException or ArgumentException or DllNotFoundException or InvalidOperationException)
        {
            notifier.Notify("STATUS=failed to start: " + e.Message);

            // Expected failures (a socket in use, an address not ours) need no stack trace; the rest do.
            LogStartFailed(logger, e.Message, e is DaemonStartException or IOException ? null : e);
            return ExitCodes.Failure;
        }
    }

    [LoggerMessage(Level = LogLevel.Critical, Message = "zramd could not start: {Reason}")]
    private static partial void LogStartFailed(ILogger logger, string reason, Exception? e);
}
