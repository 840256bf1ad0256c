using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Nbd;
using ZramDaemon.Attach;
using ZramDaemon.Cli;
using ZramDaemon.Configuration;
using ZramDaemon.Control;
using ZramDaemon.Device;
using ZramDaemon.Device.Writeback;
using ZramDaemon.Native;
using ZramDaemon.Safety;
using ZramDaemon.Systemd;

namespace ZramDaemon.Hosting;

/// <summary>
/// Owns what the daemon serves: the devices, the NBD server and its listeners, the control socket, and the
/// conversation with systemd. Start: devices, then listeners (all bound before any is served, so a bad address
/// fails the start with nothing half-running), then the devices with <c>attach =</c> bound to their kernel
/// /dev/nbdN, then READY=1; from then on SIGHUP reloads (<see cref="ConfigurationReload"/>). Stop (SIGTERM): no
/// more reloads, STOPPING=1, detach those kernel devices (the kernel sends NBD_CMD_DISC after its requests in
/// flight), stop accepting, let requests in flight finish, close connections, then free the devices.
/// </summary>
internal sealed partial class ZramdService : IHostedService, IAsyncDisposable
{
    /// <summary>How long requests already in flight get to finish at stop before connections are closed.</summary>
    private static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(10);

    /// <summary>How often STATUS= is refreshed under systemd (only sent when it changed).</summary>
    private static readonly TimeSpan StatusInterval = TimeSpan.FromSeconds(5);

    private readonly ZramdConfiguration _config;
    private readonly ILoggerFactory _loggerFactory;
    private readonly SystemdNotifier _notifier;
    private readonly ConfigurationReload _reload;
    private readonly ILogger _logger;
    private readonly List<ZramDevice> _devices = [];
    private readonly List<NbdListener> _listeners = [];
    private readonly List<Task> _serving = [];
    private readonly List<KernelNbdAttachment> _attachments = [];
    private readonly CancellationTokenSource _detached = new();
    private readonly CancellationTokenSource _stopAccepting = new();
    private readonly CancellationTokenSource _stopPeriodic = new();
    private NbdServer? _server;
    private ControlServer? _control;
    private Task? _watchdog;
    private Task? _status;
    private Task? _idleCollector;
    private IDisposable? _hangup;

    public ZramdService(ZramdConfiguration config, ILoggerFactory loggerFactory, SystemdNotifier notifier, ConfigurationReload reload)
    {
        _config = config;
        _reload = reload;
        _loggerFactory = loggerFactory;
        _notifier = notifier;
        _logger = loggerFactory.CreateLogger("zramd");
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            Start();
        }
        catch
        {
            // A start that failed late (an attach) already serves: nothing may reach a device once it is freed, so
            // the control socket and the NBD listeners stop first.
            await StopControlAsync().ConfigureAwait(false);
            await StopServingAsync().ConfigureAwait(false);
            CloseEverything();
            throw;
        }
    }

    private void Start()
    {
        foreach (DeviceConfiguration d in _config.Devices)
        {
            _devices.Add(MakeDevice(d));
        }

        _server = new NbdServer(
            new NbdServerOptions
            {
                MaxConnections = _config.MaxConnections,
                MaxInFlightPerConnection = _config.MaxInFlightPerConnection,
                WorkerThreadsPerConnection = _config.ThreadsPerConnection,
                MaxPayload = _config.MaxPayload,
                HandshakeTimeout = _config.HandshakeTimeout,
                BusyPollMicroseconds = _config.BusyPollMicroseconds,
                TlsMode = _config.TlsMode,
                TlsCertificate = _config.TlsCertificate,
                TlsClientAuthorities = _config.TlsClientAuthorities,

                // Inherited from the main thread already; marked again in case a thread that predates the mark
                // (the runtime's own) started the thread that accepts connections.
                IoThreadStarted = static () => IoThread.MarkCurrentAsIoFlusher(),
            },
            _loggerFactory);
        foreach (ZramDevice device in _devices)
        {
            // Asked at each LIST or INFO: the algorithm may change (zramd set NAME comp_algorithm=...).
            _server.AddExport(new NbdExport(device.Name, () => $"zramd {device.Name}: {StatusTable.HumanSize(device.Size)}, {device.Algorithm}", device));
        }

        IReadOnlyList<NbdListener> activated;
        try
        {
            activated = NbdListener.FromSystemd();
        }
        catch (IOException e)
        {
            throw new DaemonStartException($"cannot serve the sockets systemd passed: {e.Message}", e);
        }

        ListenAddress? hintAddress = null;
        if (activated.Count > 0)
        {
            _listeners.AddRange(activated);
            LogSocketActivated(activated.Count);
            foreach (NbdListener listener in activated)
            {
                if (listener.TcpEndPoint is { } endPoint)
                {
                    WarnIfExposed(listener.Description, endPoint.Address);
                }
            }

            // "unix:/run/zramd/zramd.sock (systemd zramd.socket)": the path is what clients attach to; else the first TCP
            // socket's address.
            string? unix = activated.Select(l => l.Description).FirstOrDefault(d => d.StartsWith("unix:/", StringComparison.Ordinal));
            if (unix is not null && ListenAddress.TryParse(unix.Split(' ')[0], out ListenAddress? parsed, out _))
            {
                hintAddress = parsed;
            }
            else if (activated.Select(l => l.TcpEndPoint).FirstOrDefault(e => e is not null) is { } endPoint)
            {
                hintAddress = ListenAddress.Tcp(endPoint);
            }
        }
        else
        {
            foreach (ListenAddress address in _config.Listen)
            {
                _listeners.Add(Bind(address));
                if (!address.IsUnix)
                {
                    WarnIfExposed(address.ToString(), address.EndPoint.Address);
                }
            }

            if (_config.SocketGroupFallback is { } why && _config.Listen.Any(l => l.IsUnix))
            {
                LogSocketGroupFallback(ZramdConfiguration.DefaultSocketGroup, why);
            }

            hintAddress = _config.Listen[0];
        }

        _control = StartControl(_server);

        foreach (NbdListener listener in _listeners)
        {
            _serving.Add(_server.ServeAsync(listener, _stopAccepting.Token));
        }

        // After the listeners: a device that cannot be attached fails the start like an address in use would.
        foreach (DeviceConfiguration d in _config.Devices)
        {
            if (d.Attach is { } device)
            {
                Attach(d.Name, device);
            }
        }

        string[] where = _listeners.Select(l => l.Description).ToArray();
        LogServing(AttachHint.For(where, hintAddress, _devices[0].Name, _config.TlsMode == Nbd.NbdTlsMode.Required));
        if (_devices.Count > 1)
        {
            LogOtherExports(string.Join(", ", _devices.Skip(1).Select(d => d.Name)));
        }

        // Every listening socket is bound and listening, so connections are accepted from here on.
        _notifier.Notify("READY=1\nSTATUS=" + Summary(where), SystemdNotifier.ReadyWait);
        if (_notifier.WatchdogInterval is { } interval)
        {
            _watchdog = WatchdogAsync(interval, _stopAccepting.Token);
        }

        if (_notifier.IsEnabled)
        {
            _status = StatusAsync(_stopPeriodic.Token);
        }

        // Serving: SIGHUP reloads from here on (a renewed TLS certificate), one held since Main now.
        NbdServer server = _server;
        _hangup = HangupSignal.ReloadWith(() => _reload.Run(server, _devices));

        // Last, so that a start that fails leaves none running: what connections and verbs leave is collected when the
        // daemon goes quiet.
        _idleCollector = IdleCollector.StartingNow(_loggerFactory.CreateLogger<IdleCollector>()).RunAsync(_stopPeriodic.Token);
    }

    /// <summary>A device as configured. A writeback-file another process holds is a configuration error only the start
    /// can see (the configuration check runs before any file is opened): it is reported as one, naming the key.</summary>
    private ZramDevice MakeDevice(DeviceConfiguration d)
    {
        try
        {
            return new ZramDevice(
                new ZramDeviceOptions
                {
                    Name = d.Name,
                    DiskSize = d.DiskSize,
                    Algorithm = d.Algorithm,
                    MemLimit = d.MemLimit,
                    CompactWatermarkPercent = d.CompactWatermarkPercent,
                    DeferredFreeCapacity = d.DeferredFreeCapacity,
                    ReadOnly = d.ReadOnly,
                    RecompressAlgorithm = d.RecompressAlgorithm,
                    RecompressIdleAfter = d.RecompressIdleAfter,
                    RecompressCpuPercent = d.RecompressCpuPercent,
                    RecompressDictionarySize = d.RecompressDictionarySize,
                    BackingFile = d.WritebackFile,
                    WritebackWatermarkPercent = d.WritebackWatermarkPercent,
                    WritebackLimitPerDay = d.WritebackLimitPerDay,
                    Dedup = d.Dedup,
                },
                _loggerFactory);
        }
        catch (OutOfMemoryException e)
        {
            // A size this process cannot hold (a cgroup's memory.max, overcommit off, a heap limit) is the key's fault,
            // not a crash: the slot table, made whole at the start, says how much it wanted; the rest (the pool's
            // mappings, zstd's contexts) say what failed.
            string why = (e is SlotTableTooLargeException ? e.Message : $"not enough memory to make the device: {e.Message}")
                + ": give a smaller size, or more memory to zramd";
            throw d.SizeSetting?.Fail(why) ?? new ConfigurationException($"[{d.Name}] zram-size: {why}", e);
        }
        catch (Exception e) when (d.WritebackFile is not null && e is IOException or UnauthorizedAccessException)
        {
            // Only the backing file touches the filesystem here: one another zramd holds, or one zramd cannot open,
            // create or size (no permission, /proc, a read-only or full filesystem) is the key's fault, with the OS's reason.
            string why = e is BackingFileInUseException ? $"{BackingFileInUseException.Reason}: each device needs a file of its own" : e.Message;
            throw d.WritebackFileSetting?.Fail(why) ?? new ConfigurationException($"[{d.Name}] writeback-file = '{d.WritebackFile}': {why}", e);
        }
    }

    /// <summary>STATUS= every few seconds while running, when it changed: what each device holds and who uses it.</summary>
    private async Task StatusAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(StatusInterval);
        string? last = null;
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                string status = StatusSummary.Format(_devices.Select(d =>
                {
                    ZramStats stats = d.GetStats();
                    return (d.Name, stats.OrigDataSize, stats.ComprDataSize, _server!.GetConnectionCount(d.Name));
                }));
                if (status != last && _notifier.NotifyStatus(status))
                {
                    last = status;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Binds export <paramref name="name"/> to the kernel's <paramref name="device"/> through a socketpair
    /// this server serves itself, with simple replies only (the kernel's nbd driver reads no structured replies).</summary>
    private void Attach(string name, string device)
    {
        KernelNbdAttachment attachment;
        try
        {
            try
            {
                attachment = AttachOnce();
            }
            catch (NbdAttachException e) when (e.Errno == Interop.Libc.EBusy && KernelNbdAttachment.TryDisconnectStale(device))
            {
                // Left configured by a daemon that died (Restart=on-failure brings this one up): taken back once.
                LogStaleDetached(device);
                attachment = AttachOnce();
            }
        }
        catch (NbdAttachException e)
        {
            throw new DaemonStartException($"[{name}] attach = {device}: {e.Message}", e);
        }

        _attachments.Add(attachment);
        LogAttached(name, attachment.DevicePath, attachment.Method.ToString());

        KernelNbdAttachment AttachOnce()
            => KernelNbdAttachment.AttachServed(s => _server!.ServeConnectionAsync(s, simpleRepliesOnly: true, _detached.Token), name, device);
    }

    /// <summary>Disconnects the kernel devices this daemon attached (whoever still has one open sees I/O errors
    /// from here on; the systemd units swap off and unmount before zramd stops), then waits for their connections
    /// to end.</summary>
    private async Task DetachAllAsync()
    {
        Task served = Task.WhenAll(_attachments.Select(a => a.Serving).OfType<Task>());
        DetachEach();
        if (await Task.WhenAny(served, Task.Delay(StopGrace)).ConfigureAwait(false) != served)
        {
            // The kernel did not close its end in time: cut the connections, the server stop below waits for them.
            await _detached.CancelAsync().ConfigureAwait(false);
        }
    }

    private void DetachEach()
    {
        foreach (KernelNbdAttachment attachment in _attachments)
        {
            try
            {
                attachment.Dispose();
                LogDetached(attachment.DevicePath);
            }
            catch (NbdAttachException e)
            {
                LogDetachFailed(attachment.DevicePath, e.Message);
            }
        }

        _attachments.Clear();
    }

    private string Summary(string[] where) =>
        $"serving {string.Join(", ", _devices.Select(d => $"{d.Name} ({StatusTable.HumanSize(d.Size)} {d.Algorithm})"))} on {string.Join(", ", where)}";

    /// <summary>The control socket, failing the start the way a listener does (a directory zramd may not create, a
    /// live daemon on the path) rather than with an exception the runner does not expect.</summary>
    private ControlServer StartControl(NbdServer server)
    {
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(_config.ControlPath)!);
            return ControlServer.Start(_config.ControlPath, new DeviceRegistry(_devices, server), _logger);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
        {
            throw new DaemonStartException($"cannot serve the control socket {_config.ControlPath}: {e.Message}", e);
        }
    }

    private NbdListener Bind(ListenAddress address)
    {
        try
        {
            if (address.IsUnix)
            {
                Directory.CreateDirectory(Path.GetDirectoryName(address.UnixPath)!);
                return NbdListener.BindUnix(address.UnixPath, _config.SocketMode, _config.SocketGroupId);
            }

            return NbdListener.BindTcp(address.EndPoint);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
        {
            throw new DaemonStartException($"cannot listen on {address}: {e.Message}", e);
        }
    }

    /// <summary>A TCP address other hosts can reach (configured, or a socket systemd passed in), without TLS
    /// required: whoever reaches it can read and write every export, and the traffic (swapped-out memory) crosses
    /// the network in clear.</summary>
    private void WarnIfExposed(string where, System.Net.IPAddress ip)
    {
        if (_config.TlsMode == NbdTlsMode.Required || System.Net.IPAddress.IsLoopback(ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip))
        {
            return;
        }

        LogExposedWithoutTls(where, _config.TlsMode == NbdTlsMode.Off ? "TLS is off" : "TLS is only optional");
    }

    private async Task WatchdogAsync(TimeSpan interval, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(interval);
        try
        {
            do
            {
                _notifier.Notify("WATCHDOG=1");
            }
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false));
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        // No reload from here on: none starts, one applying finishes first, one still reading the file applies nothing.
        _hangup?.Dispose();
        _reload.Stop();

        // No control request either, and the runs under way are told to stop (StopControlAsync waits for them below).
        _control?.BeginStop();

        // No periodic STATUS= after STOPPING=1's "stopping", and no collection while stopping.
        await StopPeriodicAsync().ConfigureAwait(false);

        _notifier.Notify("STOPPING=1\nSTATUS=stopping");
        if (_server is not null)
        {
            // First the kernel devices this daemon attached, while the server still answers: NBD_CMD_DISCONNECT makes
            // the kernel send NBD_CMD_DISC, and it fails what is still queued with EIO (Linux 6.1's
            // nbd_disconnect_and_put), which is why swapoff and umount must come first (the units' ordering). What
            // is left are other clients.
            await DetachAllAsync().ConfigureAwait(false);
            int open = _server.ConnectionCount;
            if (open > 0)
            {
                string perExport = string.Join(", ", _devices.Select(d => $"{d.Name}: {_server.GetConnectionCount(d.Name)}"));
                LogStoppingWithClients(open, perExport);
            }
            else
            {
                LogStopping();
            }

            await StopServingAsync().ConfigureAwait(false);
        }

        if (_watchdog is not null)
        {
            await _watchdog.ConfigureAwait(false);
        }

        // Waits for the verbs still running (ControlServer.DisposeAsync): the devices are freed below.
        await StopControlAsync().ConfigureAwait(false);

        // No request runs any more: finish the frees that trims and overwrites queued, so the report is final.
        foreach (ZramDevice device in _devices)
        {
            device.FlushDeferredFrees();
            ZramStats stats = device.GetStats();
            LogDeviceStopped(device.Name, stats.OrigDataSize, stats.DeferredFreeDepth);
        }

        CloseEverything();
        LogStopped();
    }

    /// <summary>Ends the periodic STATUS= and the idle collection, and waits for both.</summary>
    private async Task StopPeriodicAsync()
    {
        await _stopPeriodic.CancelAsync().ConfigureAwait(false);
        foreach (Task? periodic in new[] { _status, _idleCollector })
        {
            if (periodic is not null)
            {
                await periodic.ConfigureAwait(false);
            }
        }
    }

    /// <summary>Stops accepting NBD connections and waits for the open ones (up to <see cref="StopGrace"/>).</summary>
    private async Task StopServingAsync()
    {
        await _stopAccepting.CancelAsync().ConfigureAwait(false);
        if (_server is not null)
        {
            await _server.StopAsync(StopGrace).ConfigureAwait(false);
            await Task.WhenAll(_serving).ConfigureAwait(false);
        }
    }

    /// <summary>Closes the control socket once the requests it started have ended.</summary>
    private async Task StopControlAsync()
    {
        if (_control is not null)
        {
            await _control.DisposeAsync().ConfigureAwait(false);
            _control = null;
        }
    }

    /// <summary>Detaches what is still attached (a failed start), closes listeners (removing their socket files)
    /// and frees the devices' memory.</summary>
    private void CloseEverything()
    {
        DetachEach();
        foreach (NbdListener listener in _listeners)
        {
            listener.Dispose();
        }

        _listeners.Clear();
        foreach (ZramDevice device in _devices)
        {
            device.Dispose();
        }

        _devices.Clear();
    }

    public async ValueTask DisposeAsync()
    {
        await StopPeriodicAsync().ConfigureAwait(false);

        await StopControlAsync().ConfigureAwait(false);
        if (_server is not null)
        {
            await _server.DisposeAsync().ConfigureAwait(false);
        }

        CloseEverything();
        _stopAccepting.Dispose();
        _detached.Dispose();
        _stopPeriodic.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Hint}")]
    private partial void LogServing(string hint);

    [LoggerMessage(Level = LogLevel.Warning, Message = "listening on {Address}, which is not loopback, and {Tls}: anyone who can reach it can read and write every export in clear; set tls-mode = required (with tls-certificate and tls-key) or listen on 127.0.0.1 or a Unix socket")]
    private partial void LogExposedWithoutTls(string address, string tls);

    [LoggerMessage(Level = LogLevel.Warning, Message = "the NBD sockets keep zramd's own group instead of the default '{Group}': {Why}; set socket-group to choose one")]
    private partial void LogSocketGroupFallback(string group, string why);

    [LoggerMessage(Level = LogLevel.Information, Message = "also exported: {Names}")]
    private partial void LogOtherExports(string names);

    [LoggerMessage(Level = LogLevel.Information, Message = "socket activation: serving the {Count} socket(s) systemd passed; listen settings are not used")]
    private partial void LogSocketActivated(int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "stopping: no clients connected")]
    private partial void LogStopping();

    [LoggerMessage(Level = LogLevel.Error, Message = "STOPPING WITH {Count} CLIENT(S) CONNECTED ({PerExport}): requests in flight are finished, but everything stored is lost when zramd exits; swapoff and umount before stopping zramd")]
    private partial void LogStoppingWithClients(int count, string perExport);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Name}: released {Bytes} bytes of stored data; deferred frees pending: {Deferred}")]
    private partial void LogDeviceStopped(string name, long bytes, long deferred);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Name} attached to {Device} ({Method}); it is detached when zramd stops")]
    private partial void LogAttached(string name, string device, string method);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device} was left attached to a dead connection (a zramd that did not stop cleanly, unused since): disconnected it to attach again")]
    private partial void LogStaleDetached(string device);

    [LoggerMessage(Level = LogLevel.Information, Message = "detached {Device}")]
    private partial void LogDetached(string device);

    [LoggerMessage(Level = LogLevel.Warning, Message = "could not detach {Device}: {Reason}")]
    private partial void LogDetachFailed(string device, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "stopped")]
    private partial void LogStopped();
}
