using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Nbd;
using Serilog.Core;
using ZramDaemon.Configuration;
using ZramDaemon.Control;
using ZramDaemon.Device;

namespace ZramDaemon.Hosting;

/// <summary>
/// What SIGHUP (systemctl reload zramd) does: reads the configuration again from the sources it came from at start
/// (the file, ZRAMD_*, the command line) and applies what can change while the devices hold data: the TLS
/// certificate, its key and the client authorities, for the handshakes that follow (a renewed certificate, as
/// nginx takes one), log-level (debug for a while, without losing what the devices hold), and a device's
/// zram-resident-limit, compression-algorithm and writeback-limit, as `zramd set` sets them at run time (mem_limit,
/// comp_algorithm, writeback_limit), each only when the file's value changed since it was read: a value set with
/// `zramd set` meanwhile stays unless the file changes it. Every other setting shapes a device, a socket or the
/// process, and applying it means a restart, which empties the devices: each that differs is one warning, and it
/// waits for the next start. A configuration that no longer loads is one error line naming the key, as at start,
/// and nothing changes.
/// </summary>
internal sealed partial class ConfigurationReload
{
    private readonly Func<ZramdConfiguration> _load;
    private readonly LoggingLevelSwitch _level;
    private readonly ILogger _logger;

    // Held while a reload applies what it read (bounded work; never while it reads, which may block): the stop takes
    // it to end reloads, so that none touches a device being freed.
    private readonly Lock _gate = new();
    private bool _stopped;
    private ZramdConfiguration _running;

    /// <param name="load">Reads the configuration as at start.</param>
    /// <param name="running">The configuration the daemon started with.</param>
    /// <param name="level">The daemon's log level, which log-level sets.</param>
    public ConfigurationReload(Func<ZramdConfiguration> load, ZramdConfiguration running, LoggingLevelSwitch level, ILogger logger)
    {
        _load = load;
        _running = running;
        _level = level;
        _logger = logger;
    }

    /// <summary>Reloads (see the class). Not concurrently with itself. systemd is not told (RELOADING=1, READY=1): a
    /// reload that blocks reading would leave the unit reloading for good; `systemctl reload` returns once the signal
    /// is sent, as for nginx's kill -HUP, and the log says when it is done.</summary>
    public void Run(NbdServer server, IReadOnlyList<ZramDevice> devices)
    {
        ZramdConfiguration? fresh = null;
        string? refused = null;
        try
        {
            fresh = _load();
        }
        catch (Exception e) when (e is ConfigurationException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            // ConfigurationException names the key; the others (a working directory deleted under a relative path)
            // are refused alike: a reload that cannot read ends nothing but itself.
            refused = e.Message;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Anything else is a fault of the reload's own: on the reload thread it would end the process.
            LogReloadFailed(_logger, e);
            return;
        }

        lock (_gate)
        {
            if (_stopped)
            {
                return;
            }

            if (fresh is null)
            {
                LogNotReloaded(_logger, refused!);
                return;
            }

            try
            {
                Apply(fresh, server, devices);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A fault of the reload's own (once: a path holding ", KEY = " named a key twice) is not worth the
                // process, which holds every device's data: logged, and the daemon runs on.
                LogReloadFailed(_logger, e);
            }
        }
    }

    /// <summary>The stop: waits for a reload that is applying what it read, and ends reloads (one still reading, or
    /// blocked reading, applies nothing).</summary>
    public void Stop()
    {
        lock (_gate)
        {
            _stopped = true;
        }
    }

    private void Apply(ZramdConfiguration fresh, NbdServer server, IReadOnlyList<ZramDevice> devices)
    {

        // The mode in force: a changed tls-mode waits for the next start (and is warned about below).
        string tls = "tls-mode = " + _running.TlsMode.ToString().ToLowerInvariant();
        if (fresh.TlsMode == _running.TlsMode && fresh.TlsMode != NbdTlsMode.Off)
        {
            try
            {
                server.ReplaceTlsCredentials(fresh.TlsCertificate!, fresh.TlsClientAuthorities);
            }
            catch (ArgumentException e)
            {
                LogNotReloaded(_logger, e.Message);
                return;
            }

            _running = _running with
            {
                TlsCertificatePath = fresh.TlsCertificatePath,
                TlsKeyPath = fresh.TlsKeyPath,
                TlsCertificate = fresh.TlsCertificate,
                TlsClientCaPath = fresh.TlsClientCaPath,
                TlsClientAuthorities = fresh.TlsClientAuthorities,
            };
            tls = "TLS certificate " + Describe(fresh.TlsCertificate!) + ", client authorities: "
                + (fresh.TlsClientAuthorities is { } authorities ? $"{authorities.Count} from {fresh.TlsClientCaPath}" : "none");
        }

        // Before the lines below, so that they are logged at the new level (a reload to warning says only what waits).
        _level.MinimumLevel = fresh.LogLevel;
        _running = _running with { LogLevel = fresh.LogLevel, Devices = _running.Devices.Select(d => ApplyDevice(d, fresh, devices)).ToList() };

        int waiting = 0;
        var running = ConfigurationReport.Settings(_running).ToDictionary(s => s.Key, s => s.Value, StringComparer.Ordinal);
        var read = ConfigurationReport.Settings(fresh).ToDictionary(s => s.Key, s => s.Value, StringComparer.Ordinal);
        // What a warning names as running: a run-time setting the device refused runs with the value it has, which
        // `zramd set` may have given since the file's was applied.
        var shown = ConfigurationReport.Settings(WithDeviceValues(_running, devices)).ToDictionary(s => s.Key, s => s.Value, StringComparer.Ordinal);
        foreach ((string key, string value) in read)
        {
            string now = running.GetValueOrDefault(key, NotSet);
            if (now != value)
            {
                LogNeedsRestart(_logger, key, value, shown.GetValueOrDefault(key, NotSet));
                waiting++;
            }
        }

        foreach ((string key, string now) in running)
        {
            if (!read.ContainsKey(key))
            {
                LogNeedsRestart(_logger, key, NotSet, now);
                waiting++;
            }
        }

        LogReloaded(_logger, fresh.ConfigPath ?? "none (embedded default)", LogLevelNames.Name(fresh.LogLevel), tls, waiting);
    }

    /// <summary>The device's run-time settings the file changed, applied as `zramd set` applies them; returns what the
    /// device now runs with (a setting refused keeps its running value, and so waits for the next start).</summary>
    private DeviceConfiguration ApplyDevice(DeviceConfiguration running, ZramdConfiguration fresh, IReadOnlyList<ZramDevice> devices)
    {
        if (fresh.Devices.FirstOrDefault(d => d.Name == running.Name) is not { } read || devices.FirstOrDefault(d => d.Name == running.Name) is not { } device)
        {
            return running;
        }

        DeviceConfiguration applied = running;
        if (read.MemLimit != running.MemLimit && Set(device, DeviceSetting.MemLimit, read.MemLimit.ToString(CultureInfo.InvariantCulture)))
        {
            applied = applied with { MemLimit = read.MemLimit };
        }

        if (read.Algorithm != running.Algorithm && Set(device, DeviceSetting.CompAlgorithm, read.Algorithm))
        {
            applied = applied with { Algorithm = read.Algorithm };
        }

        if (read.WritebackLimitPerDay != running.WritebackLimitPerDay && Set(device, DeviceSetting.WritebackLimit, read.WritebackLimitPerDay.ToString(CultureInfo.InvariantCulture)))
        {
            applied = applied with { WritebackLimitPerDay = read.WritebackLimitPerDay };
        }

        return applied;
    }

    /// <summary><paramref name="config"/> with each device's run-time settings as the device has them now.</summary>
    private static ZramdConfiguration WithDeviceValues(ZramdConfiguration config, IReadOnlyList<ZramDevice> devices) => config with
    {
        Devices = config.Devices.Select(d =>
        {
            if (devices.FirstOrDefault(device => device.Name == d.Name) is not { } device)
            {
                return d;
            }

            ZramStats stats = device.GetStats();
            return d with { MemLimit = stats.MemLimit, Algorithm = device.Algorithm, WritebackLimitPerDay = stats.WritebackLimit };
        }).ToList(),
    };

    private bool Set(ZramDevice device, string key, string value)
    {
        ControlReply reply = DeviceRegistry.Set(device, key, value);
        if (reply.Ok)
        {
            LogSet(_logger, reply.Text!);
        }
        else
        {
            LogNotSet(_logger, device.Name, reply.Error!);
        }

        return reply.Ok;
    }

    private const string NotSet = "(not set)";

    /// <summary>"CN=host, valid until 2027-03-01, SHA-256 AB12...": enough for an admin to tell a renewed certificate.</summary>
    private static string Describe(X509Certificate2 certificate) => string.Create(CultureInfo.InvariantCulture,
        $"{certificate.Subject}, valid until {certificate.NotAfter.ToUniversalTime():yyyy-MM-dd HH:mm} UTC, SHA-256 {certificate.GetCertHashString(System.Security.Cryptography.HashAlgorithmName.SHA256)[..16]}");

    [LoggerMessage(Level = LogLevel.Information, Message = "SIGHUP: configuration read again ({Path}): log-level = {Level}, {Tls}; settings changed that wait for the next start: {Waiting}")]
    private static partial void LogReloaded(ILogger logger, string path, string level, string tls, int waiting);

    [LoggerMessage(Level = LogLevel.Warning, Message = "SIGHUP: {Key} = {Value} in the configuration, {Running} while running: it applies at the next start, and a restart empties the devices")]
    private static partial void LogNeedsRestart(ILogger logger, string key, string value, string running);

    [LoggerMessage(Level = LogLevel.Information, Message = "SIGHUP: {Applied}")]
    private static partial void LogSet(ILogger logger, string applied);

    [LoggerMessage(Level = LogLevel.Error, Message = "SIGHUP: {Device}: {Reason}")]
    private static partial void LogNotSet(ILogger logger, string device, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "SIGHUP: the reload failed part way (a fault of zramd's; please report it), zramd runs on")]
    private static partial void LogReloadFailed(ILogger logger, Exception exception);

    [LoggerMessage(Level = LogLevel.Error, Message = "SIGHUP: configuration not reloaded, zramd runs on with the one it has: {Reason}")]
    private static partial void LogNotReloaded(ILogger logger, string reason);
}
