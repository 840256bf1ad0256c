using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd;
using Serilog.Core;
using ZramDaemon.Configuration;
using ZramDaemon.Hosting;
using ZramDaemon.Tests.Device.Writeback;

namespace ZramDaemon.Tests.Daemon;

/// <summary>
/// A reload runs on a thread of its own (HangupSignal), where an exception it lets out ends the process and every
/// device's data with it: a fault while reading the configuration that is none of the kinds a bad file gives (here an
/// InvalidOperationException) is logged as an error, and the next reload runs as usual.
/// </summary>
public sealed class ConfigurationReloadFaultTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-reload-fault-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task A_fault_while_reading_is_logged_and_the_next_reload_runs()
    {
        ZramdConfiguration config = ConfigurationLoader.Load(new CommandLineSettings { Size = "16M" }, new SystemFacts
        {
            RamMiB = 16384,
            IsRoot = false,
            Environment = new Dictionary<string, string> { ["XDG_RUNTIME_DIR"] = _dir },
            DefaultConfigFile = Path.Combine(_dir, "absent.conf"),
        });
        var logged = new List<LogLevel>();
        int reads = 0;
        var reload = new ConfigurationReload(
            () => ++reads == 1 ? throw new InvalidOperationException("a fault of the reader's") : config,
            config,
            new LoggingLevelSwitch(),
            new CallbackLoggerFactory((level, _) => logged.Add(level)));
        await using var server = new NbdServer(new NbdServerOptions(), NullLoggerFactory.Instance);

        reload.Run(server, []);
        Assert.Equal([LogLevel.Error], logged);

        logged.Clear();
        reload.Run(server, []);
        Assert.Equal(2, reads);
        Assert.Equal([LogLevel.Information], logged);
    }
}
