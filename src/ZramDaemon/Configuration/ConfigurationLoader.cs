using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.RegularExpressions;
using Nbd;
using Serilog.Events;

namespace ZramDaemon.Configuration;

/// <summary>
/// Builds the <see cref="ZramdConfiguration"/> from the config file, then ZRAMD_* environment variables,
/// then command-line flags, each overriding the one before. Every value is validated here, before anything
/// starts; the first bad one becomes a <see cref="ConfigurationException"/> naming where it came from.
///
/// File layout: <c>[zramd]</c> holds daemon settings, each <c>[zramN]</c> one device (export name zramN).
/// No device section means the embedded default zram0. --size, --algorithm and --mem-limit (and their
/// ZRAMD_ variables) apply to every device.
/// </summary>
public static partial class ConfigurationLoader
{
    public const string DaemonSection = "zramd";

    /// <summary>The longest duration a key takes: about 31 years.</summary>
    private const long MaxDurationSeconds = 1_000_000_000;

    /// <summary>zram-generator keys that zramd does not implement: named so the error can say so.</summary>
    private static readonly string[] ZramGeneratorOnlyKeys =
        ["host-memory-limit", "swap-priority", "options", "fs-type", "mount-point", "writeback-device", "zram-fraction", "max-zram-size"];

    /// <summary>A device's size when its section gives none, named as such in errors.</summary>
    private static readonly Setting DefaultSizeSetting = new(RamExpression.DefaultSize, "the default zram-size", false);

    public static ZramdConfiguration Load(CommandLineSettings flags, SystemFacts facts)
    {
        ArgumentNullException.ThrowIfNull(flags);
        ArgumentNullException.ThrowIfNull(facts);

        // 1. Which file: --config, else ZRAMD_CONFIG, else /etc/zramd/zramd.conf when it exists.
        string? configPath = flags.ConfigPath ?? facts.Get("ZRAMD_CONFIG");

        // --config "$CONF" with CONF unset: opening "" throws ArgumentException, not an error IniFile reports.
        // (An empty ZRAMD_CONFIG counts as unset.)
        if (flags.ConfigPath is { } option && !FilePath.TryGetFullPath(option, out _, out string pathError))
        {
            throw new Setting(option, "option --config", true).Fail(pathError);
        }

        if (configPath is null && File.Exists(facts.DefaultConfigFile))
        {
            configPath = facts.DefaultConfigFile;
        }

        IniFile? file = configPath is null ? null : IniFile.Load(configPath);
        var daemon = new DaemonValues();
        var devices = new List<DeviceValues>();
        if (file is not null)
        {
            ReadFile(file, daemon, devices);
        }

        if (devices.Count == 0)
        {
            devices.Add(new DeviceValues("zram0"));
        }

        // 2. Environment, 3. command line: later sources replace earlier values.
        ApplyOverrides(daemon, devices, facts, flags);

        return Build(daemon, devices, facts, configPath);
    }

    private static void ReadFile(IniFile file, DaemonValues daemon, List<DeviceValues> devices)
    {
        foreach (string section in file.Sections)
        {
            if (section != DaemonSection && !DeviceName().IsMatch(section))
            {
                throw new ConfigurationException(
                    $"{file.Path}:{file.HeaderLine(section)}: [{section}]: unknown section: devices are [zram0], [zram1], ... and daemon settings go under [zramd]");
            }

            if (section != DaemonSection)
            {
                devices.Add(new DeviceValues(section));
            }
        }

        foreach (IniEntry entry in file.Entries)
        {
            var value = new Setting(entry.Value, $"{file.Path}:{entry.Line} [{entry.Section}] {entry.Key}", false);
            if (entry.Section == DaemonSection)
            {
                SetDaemonKey(daemon, entry.Key, value);
            }
            else
            {
                SetDeviceKey(devices.First(d => d.Name == entry.Section), entry.Key, value);
            }
        }
    }

    private static void SetDaemonKey(DaemonValues daemon, string key, Setting value)
    {
        switch (key)
        {
            case "listen": daemon.Listen = value; break;
            case "socket-mode": daemon.SocketMode = value; break;
            case "socket-group": daemon.SocketGroup = value; break;
            case "control": daemon.Control = value; break;
            case "tls-mode": daemon.TlsMode = value; break;
            case "tls-certificate": daemon.TlsCertificate = value; break;
            case "tls-key": daemon.TlsKey = value; break;
            case "tls-client-ca": daemon.TlsClientCa = value; break;
            case "lock-memory": daemon.LockMemory = value; break;
            case "log-level": daemon.LogLevel = value; break;
            case "max-connections": daemon.MaxConnections = value; break;
            case "max-in-flight": daemon.MaxInFlight = value; break;
            case "threads-per-connection": daemon.ThreadsPerConnection = value; break;
            case "max-payload": daemon.MaxPayload = value; break;
            case "handshake-timeout": daemon.HandshakeTimeout = value; break;
            case "busy-poll": daemon.BusyPoll = value; break;
            default:
                throw value.Fail(IsDeviceKey(key)
                    ? "unknown key in [zramd]: this is a device setting, put it under [zram0] (or another [zramN])"
                    : "unknown key: [zramd] takes listen, socket-mode, socket-group, control, tls-mode, tls-certificate, tls-key, tls-client-ca, lock-memory, log-level, max-connections, max-in-flight, threads-per-connection, max-payload, handshake-timeout, busy-poll");
        }
    }

    private static bool IsDeviceKey(string key) => key is "zram-size" or "compression-algorithm" or "zram-resident-limit"
        or "compact-watermark" or "deferred-free-capacity" or "read-only" or "attach"
        or "recompress-algorithm" or "recompress-idle-after" or "recompress-cpu-percent" or "recompress-dictionary"
        or "writeback-file" or "writeback-watermark" or "writeback-limit" or "dedup";

    private static void SetDeviceKey(DeviceValues device, string key, Setting value)
    {
        switch (key)
        {
            case "zram-size": device.Size = value; break;
            case "compression-algorithm": device.Algorithm = value; break;
            case "zram-resident-limit": device.MemLimit = value; break;
            case "compact-watermark": device.CompactWatermark = value; break;
            case "deferred-free-capacity": device.DeferredFreeCapacity = value; break;
            case "read-only": device.ReadOnly = value; break;
            case "attach": device.Attach = value; break;
            case "recompress-algorithm": device.RecompressAlgorithm = value; break;
            case "recompress-idle-after": device.RecompressIdleAfter = value; break;
            case "recompress-cpu-percent": device.RecompressCpuPercent = value; break;
            case "recompress-dictionary": device.RecompressDictionary = value; break;
            case "writeback-file": device.WritebackFile = value; break;
            case "writeback-watermark": device.WritebackWatermark = value; break;
            case "writeback-limit": device.WritebackLimit = value; break;
            case "dedup": device.Dedup = value; break;
            default:
                throw value.Fail(ZramGeneratorOnlyKeys.Contains(key)
                    ? "a zram-generator key that zramd does not implement: remove it (swap and mounts are set up by systemd units)"
                    : "unknown key: a device takes zram-size, compression-algorithm, zram-resident-limit, compact-watermark, deferred-free-capacity, read-only, attach, recompress-algorithm, recompress-idle-after, recompress-cpu-percent, recompress-dictionary, writeback-file, writeback-watermark, writeback-limit, dedup");
        }
    }

    private static void ApplyOverrides(DaemonValues daemon, List<DeviceValues> devices, SystemFacts facts, CommandLineSettings flags)
    {
        static Setting? Env(SystemFacts facts, string name) =>
            facts.Get(name) is { } v ? new Setting(v, $"environment variable {name}", false) : null;

        daemon.Listen = Env(facts, "ZRAMD_LISTEN") ?? daemon.Listen;
        daemon.SocketMode = Env(facts, "ZRAMD_SOCKET_MODE") ?? daemon.SocketMode;
        daemon.SocketGroup = Env(facts, "ZRAMD_SOCKET_GROUP") ?? daemon.SocketGroup;
        daemon.Control = Env(facts, "ZRAMD_CONTROL") ?? daemon.Control;
        daemon.TlsMode = Env(facts, "ZRAMD_TLS_MODE") ?? daemon.TlsMode;
        daemon.TlsCertificate = Env(facts, "ZRAMD_TLS_CERTIFICATE") ?? daemon.TlsCertificate;
        daemon.TlsKey = Env(facts, "ZRAMD_TLS_KEY") ?? daemon.TlsKey;
        daemon.TlsClientCa = Env(facts, "ZRAMD_TLS_CLIENT_CA") ?? daemon.TlsClientCa;
        daemon.LockMemory = Env(facts, "ZRAMD_LOCK_MEMORY") ?? daemon.LockMemory;
        daemon.LogLevel = Env(facts, "ZRAMD_LOG_LEVEL") ?? daemon.LogLevel;
        daemon.MaxConnections = Env(facts, "ZRAMD_MAX_CONNECTIONS") ?? daemon.MaxConnections;
        daemon.MaxInFlight = Env(facts, "ZRAMD_MAX_IN_FLIGHT") ?? daemon.MaxInFlight;
        daemon.ThreadsPerConnection = Env(facts, "ZRAMD_THREADS_PER_CONNECTION") ?? daemon.ThreadsPerConnection;
        daemon.MaxPayload = Env(facts, "ZRAMD_MAX_PAYLOAD") ?? daemon.MaxPayload;
        daemon.HandshakeTimeout = Env(facts, "ZRAMD_HANDSHAKE_TIMEOUT") ?? daemon.HandshakeTimeout;
        daemon.BusyPoll = Env(facts, "ZRAMD_BUSY_POLL") ?? daemon.BusyPoll;
        Setting? size = Env(facts, "ZRAMD_SIZE");
        Setting? algorithm = Env(facts, "ZRAMD_ALGORITHM");
        Setting? memLimit = Env(facts, "ZRAMD_MEM_LIMIT");

        if (flags.Listen.Count > 0)
        {
            daemon.Listen = new Setting(string.Join(' ', flags.Listen), "option --listen", true);
        }

        if (flags.ControlPath is not null)
        {
            daemon.Control = new Setting(flags.ControlPath, "option --control", true);
        }

        size = flags.Size is null ? size : new Setting(flags.Size, "option --size", true);
        algorithm = flags.Algorithm is null ? algorithm : new Setting(flags.Algorithm, "option --algorithm", true);
        memLimit = flags.MemLimit is null ? memLimit : new Setting(flags.MemLimit, "option --mem-limit", true);
        foreach (DeviceValues device in devices)
        {
            // A plain size (bytes with K/M/G/T) rather than a ram expression: mark it so.
            device.Size = size is null ? device.Size : size with { IsPlainSize = true };
            // The compression algorithm alone: the recompression one a file's list names stays.
            device.AlgorithmOverride = algorithm;
            device.MemLimit = memLimit is null ? device.MemLimit : memLimit with { IsPlainSize = true };
        }
    }

    private static ZramdConfiguration Build(DaemonValues daemon, List<DeviceValues> devices, SystemFacts facts, string? configPath)
    {
        var listen = new List<ListenAddress>();
        if (daemon.Listen is { } listenSetting)
        {
            foreach (string word in listenSetting.Value.Split([' ', ',', '\t'], StringSplitOptions.RemoveEmptyEntries))
            {
                if (!ListenAddress.TryParse(word, out ListenAddress? address, out string error))
                {
                    throw (listenSetting with { Value = word }).Fail(error);
                }

                // By the file reached, not the text: a symlinked directory made a second listener fail the start with
                // "in use by another server", which was zramd itself.
                if (listen.Contains(address) || (address.IsUnix && listen.Any(l => l.IsUnix && SameFile(l.UnixPath, address.UnixPath))))
                {
                    throw (listenSetting with { Value = word }).Fail("listed twice");
                }

                listen.Add(address);
            }

            if (listen.Count == 0)
            {
                throw listenSetting.Fail(ListenAddress.Usage);
            }
        }
        else
        {
            listen.Add(ListenAddress.Unix(RuntimePaths.RequireDefaultSocketPath(facts, RuntimePaths.SocketFileName)));
        }

        string controlPath;
        if (daemon.Control is { } control)
        {
            controlPath = ControlSocketPath(control);
        }
        else if (daemon.Listen is { } listenGiven && listen.FirstOrDefault(l => l.IsUnix) is { } firstUnix)
        {
            // zramd.ctl may be longer than the NBD socket's own name.
            string beside = Path.Combine(Path.GetDirectoryName(firstUnix.UnixPath)!, RuntimePaths.ControlFileName);
            controlPath = ListenAddress.TryGetSocketPath(beside, out string? fullPath, out string error)
                ? fullPath
                : throw (listenGiven with { Value = firstUnix.ToString() })
                    .Fail($"the control socket beside it, {beside}: {error}; set control (ZRAMD_CONTROL, --control)");
        }
        else
        {
            controlPath = RuntimePaths.RequireDefaultSocketPath(facts, RuntimePaths.ControlFileName);
        }

        if (listen.Any(l => l.IsUnix && SameFile(l.UnixPath, controlPath)))
        {
            throw (daemon.Control ?? daemon.Listen)!.Fail("the control socket and an NBD socket are the same file");
        }

        if (!listen.Any(l => l.IsUnix))
        {
            // Only the NBD sockets take them (the control socket is the owner's alone): shown in force over TCP, an
            // admin would believe access restricted that every local user has.
            foreach (Setting? unixOnly in new[] { daemon.SocketMode, daemon.SocketGroup })
            {
                if (unixOnly is not null)
                {
                    throw unixOnly.Fail("has no effect without a unix: listen address (it sets the NBD sockets' permissions)");
                }
            }
        }

        int socketMode = ZramdConfiguration.DefaultSocketMode;
        if (daemon.SocketMode is { } modeSetting)
        {
            string digits = modeSetting.Value;
            try
            {
                socketMode = digits.Length is >= 3 and <= 4 && digits.All(c => c is >= '0' and <= '7')
                    ? Convert.ToInt32(digits, 8)
                    : -1;
            }
            catch (FormatException)
            {
                socketMode = -1;
            }

            if (socketMode is < 0 or > 0x1FF)
            {
                throw modeSetting.Fail("not a permission mode: use octal digits like 0660 (no setuid, setgid or sticky bits)");
            }
        }

        // The name is looked up here, once: the listener is handed the number and never looks a name up again.
        string? socketGroup = null;
        uint? socketGroupId = null;
        string? socketGroupFallback = null;
        if (daemon.SocketGroup is { } groupSetting)
        {
            socketGroup = groupSetting.Value;
            uint? groupId;
            try
            {
                groupId = uint.TryParse(socketGroup, NumberStyles.None, CultureInfo.InvariantCulture, out uint number) ? number : facts.FindGroup(socketGroup);
            }
            catch (IOException e)
            {
                throw groupSetting.Fail(e.Message);
            }

            if (groupId is null)
            {
                throw groupSetting.Fail("no such group");
            }

            // chown(2) takes (gid_t)-1 as "leave the group as it is": the socket would silently keep zramd's group.
            if (groupId == uint.MaxValue)
            {
                throw groupSetting.Fail($"group id {uint.MaxValue} is (gid_t)-1, which chown takes as \"no change\": group ids go up to {uint.MaxValue - 1}");
            }

            socketGroupId = groupId;
        }
        else
        {
            // The default, disk, only where it exists and we may give files to it (CAP_CHOWN, which a unit's bounding
            // set may take from root, or membership); else our own group, and a warning at start says why.
            const string disk = ZramdConfiguration.DefaultSocketGroup;
            uint? diskId;
            try
            {
                diskId = facts.FindGroup(disk);
            }
            catch (IOException e)
            {
                // Only the default: zramd still starts, and the warning at start says why the group is ours.
                diskId = null;
                socketGroupFallback = e.Message;
            }

            if (diskId is null)
            {
                socketGroupFallback ??= $"there is no group '{disk}'";
            }
            else if (!facts.CanChownToAnyGroup && !facts.GroupIds.Contains(diskId.Value))
            {
                socketGroupFallback = $"zramd has neither CAP_CHOWN nor membership of group '{disk}', so it cannot give the sockets to it";
            }
            else
            {
                socketGroup = disk;
                socketGroupId = diskId;
            }
        }

        NbdTlsMode tlsMode = NbdTlsMode.Off;
        if (daemon.TlsMode is { } tlsSetting)
        {
            tlsMode = tlsSetting.Value.ToLowerInvariant() switch
            {
                "off" => NbdTlsMode.Off,
                "optional" => NbdTlsMode.Optional,
                "required" => NbdTlsMode.Required,
                _ => throw tlsSetting.Fail("use off, optional or required"),
            };
        }

        X509Certificate2? certificate = null;
        X509Certificate2Collection? clientAuthorities = null;
        if (tlsMode != NbdTlsMode.Off)
        {
            certificate = LoadCertificate(daemon);
            if (daemon.TlsClientCa is { } clientCa)
            {
                clientAuthorities = tlsMode == NbdTlsMode.Required
                    ? LoadAuthorities(clientCa)
                    : throw clientCa.Fail("client certificates are checked only with tls-mode = required: under optional a client that does not start TLS gets in unchecked");
            }
        }
        else
        {
            // Taken and never loaded, they would leave the admin believing the sockets speak TLS.
            RequireTls(daemon.TlsCertificate);
            RequireTls(daemon.TlsKey);
            RequireTls(daemon.TlsClientCa);
        }

        bool lockMemory = facts.IsRoot;
        if (daemon.LockMemory is { } lockSetting)
        {
            lockMemory = ParseBoolean(lockSetting);
        }

        LogEventLevel logLevel = LogEventLevel.Information;
        if (daemon.LogLevel is { } levelSetting && !LogLevelNames.TryParse(levelSetting.Value, out logLevel))
        {
            throw levelSetting.Fail(LogLevelNames.Expected);
        }

        int maxConnections = ParseCount(daemon.MaxConnections, NbdServerOptions.DefaultMaxConnections, NbdServerOptions.MaxConnectionsCeiling, "connections");
        int maxInFlight = ParseCount(daemon.MaxInFlight, NbdServerOptions.DefaultMaxInFlightPerConnection, NbdServerOptions.MaxInFlightPerConnectionCeiling, "requests in flight per connection");
        int threadsPerConnection = ParseCount(daemon.ThreadsPerConnection, NbdServerOptions.DefaultWorkerThreadsPerConnection, NbdServerOptions.WorkerThreadsPerConnectionCeiling, "threads per connection");
        // A connection's threads each serve a request of its own: more than it may have in flight would never run (the
        // server used to cut them silently while the start's log named them all). The default gives way to a lower max.
        if (threadsPerConnection > maxInFlight)
        {
            threadsPerConnection = daemon.ThreadsPerConnection is { } threads
                ? throw threads.Fail($"more than max-in-flight ({maxInFlight.ToString(CultureInfo.InvariantCulture)}): a connection never has requests for the others")
                : maxInFlight;
        }
        int maxPayload = NbdServerOptions.DefaultMaxPayload;
        if (daemon.MaxPayload is { } payloadSetting)
        {
            if (!SizeParser.TryParse(payloadSetting.Value, out long payload, out string payloadError))
            {
                throw payloadSetting.Fail(payloadError);
            }

            if (payload is < NbdServerOptions.MaxPayloadFloor or > NbdServerOptions.MaxPayloadCeiling)
            {
                throw payloadSetting.Fail("the largest READ or WRITE payload must be from 4K to 1G");
            }

            maxPayload = (int)payload;
        }

        int handshakeSeconds = NbdServerOptions.DefaultHandshakeTimeoutSeconds;
        if (daemon.HandshakeTimeout is { } timeoutSetting
            && (!int.TryParse(timeoutSetting.Value.EndsWith('s') ? timeoutSetting.Value[..^1] : timeoutSetting.Value, NumberStyles.None, CultureInfo.InvariantCulture, out handshakeSeconds)
                || handshakeSeconds is < 1 or > 3600))
        {
            throw timeoutSetting.Fail("a whole number of seconds from 1 to 3600 is required (e.g. 30 or 30s)");
        }

        int busyPoll = NbdServerOptions.DefaultBusyPollMicroseconds;
        if (daemon.BusyPoll is { } pollSetting
            && (!int.TryParse(pollSetting.Value.EndsWith("us", StringComparison.Ordinal) ? pollSetting.Value[..^2] : pollSetting.Value, NumberStyles.None, CultureInfo.InvariantCulture, out busyPoll)
                || busyPoll > NbdServerOptions.BusyPollMicrosecondsCeiling))
        {
            throw pollSetting.Fail("a whole number of microseconds from 0 (off) to 1000 is required (e.g. 50 or 50us)");
        }

        var built = devices.Select(d => BuildDevice(d, facts.RamMiB)).ToList();
        var attached = new HashSet<string>(StringComparer.Ordinal);
        var writebackFiles = new Dictionary<FileIdentity, string>();
        // The daemon's own files: a device's backing file there would empty the configuration, certificate or key (gone
        // at the next start), or be made as a regular file where a socket is then bound (a start failing on a file it
        // made itself).
        var ownFiles = new Dictionary<FileIdentity, string>();
        if (configPath is not null && FilePath.TryGetFullPath(configPath, out string? configFull, out _))
        {
            ownFiles.TryAdd(FileIdentity.Of(configFull), "the configuration file");
        }

        foreach ((Setting? tls, string what) in new[] { (daemon.TlsCertificate, "the tls-certificate"), (daemon.TlsKey, "the tls-key"), (daemon.TlsClientCa, "the tls-client-ca") })
        {
            if (tls is not null && FilePath.TryGetFullPath(tls.Value, out string? tlsFull, out _))
            {
                ownFiles.TryAdd(FileIdentity.Of(tlsFull), what);
            }
        }

        ownFiles.TryAdd(FileIdentity.Of(controlPath), "the control socket");
        foreach (ListenAddress address in listen)
        {
            if (address.IsUnix)
            {
                ownFiles.TryAdd(FileIdentity.Of(address.UnixPath), "an NBD socket");
            }
        }

        for (int i = 0; i < devices.Count; i++)
        {
            if (devices[i].Attach is { } attach && !attached.Add(attach.Value))
            {
                throw attach.Fail("another device attaches to it already");
            }

            // A device locks its file: the second would fail at start, after the first was made (and had emptied a file
            // that was there). By identity, not text: a symlinked directory, a symlink or a hard link is another path.
            if (built[i].WritebackFile is { } own && ownFiles.TryGetValue(FileIdentity.Of(own), out string? what))
            {
                throw devices[i].WritebackFile!.Fail($"is {what}: a backing file must be a file of its own");
            }

            if (built[i].WritebackFile is { } file && !writebackFiles.TryAdd(FileIdentity.Of(file), devices[i].Name))
            {
                throw devices[i].WritebackFile!.Fail($"[{writebackFiles[FileIdentity.Of(file)]}] writeback-file is the same file: each device needs its own");
            }
        }

        return new ZramdConfiguration
        {
            ConfigPath = configPath,
            Listen = listen,
            SocketMode = socketMode,
            SocketGroup = socketGroup,
            SocketGroupId = socketGroupId,
            SocketGroupFallback = socketGroupFallback,
            ControlPath = controlPath,
            TlsMode = tlsMode,
            TlsCertificatePath = daemon.TlsCertificate?.Value,
            TlsKeyPath = daemon.TlsKey?.Value,
            TlsCertificate = certificate,
            TlsClientCaPath = clientAuthorities is null ? null : daemon.TlsClientCa!.Value,
            TlsClientAuthorities = clientAuthorities,
            LockMemory = lockMemory,
            LogLevel = logLevel,
            MaxConnections = maxConnections,
            MaxInFlightPerConnection = maxInFlight,
            ThreadsPerConnection = threadsPerConnection,
            MaxPayload = maxPayload,
            HandshakeTimeout = TimeSpan.FromSeconds(handshakeSeconds),
            BusyPollMicroseconds = busyPoll,
            RamMiB = facts.RamMiB,
            Devices = built,
        };
    }

    private static DeviceConfiguration BuildDevice(DeviceValues device, double? ramMiB)
    {
        long diskSize;
        if (device.Size is { } sizeSetting)
        {
            diskSize = EvaluateSize(sizeSetting, ramMiB);
            if (diskSize <= 0)
            {
                throw sizeSetting.Fail($"the device size comes to {diskSize} bytes: it must be at least 4K");
            }

            // Before the alignment below, which would overflow near long.MaxValue.
            if (diskSize > Device.ZramDevice.MaxDiskSize)
            {
                throw sizeSetting.Fail($"the device size comes to {diskSize} bytes: a device holds at most {Device.ZramDevice.MaxDiskSize} (8 TiB less 228 KiB)");
            }
        }
        else
        {
            diskSize = EvaluateSize(DefaultSizeSetting, ramMiB);
        }

        // Like zram's disksize_store: PAGE_ALIGN.
        diskSize = checked((diskSize + 4095) & ~4095L);

        long memLimit = 0;
        if (device.MemLimit is { } limitSetting)
        {
            memLimit = EvaluateSize(limitSetting, ramMiB);
            if (memLimit < 0)
            {
                throw limitSetting.Fail("the memory limit cannot be negative (0 means no limit)");
            }

            memLimit = Device.ZramDevice.RoundMemLimit(memLimit); // whole pages, as the device keeps it: the minimum applies to that
        }

        string algorithm = "lz4";
        string? listedRecompress = null;
        if (device.Algorithm is { } algorithmSetting)
        {
            (string first, string? second) = SplitAlgorithmList(algorithmSetting);
            // An override takes the first's place unread, as --size and --mem-limit take the file's values' (a file
            // written for the kernel may name one zramd does not have: lzo-rle).
            algorithm = device.AlgorithmOverride is null ? ParseAlgorithm(algorithmSetting, first) : algorithm;
            listedRecompress = second is null ? null : ParseAlgorithm(algorithmSetting, second);
        }

        if (device.AlgorithmOverride is { } overrideSetting)
        {
            algorithm = ParseAlgorithm(overrideSetting, overrideSetting.Value);
        }

        int watermark = DeviceConfiguration.DefaultCompactWatermarkPercent;
        if (device.CompactWatermark is { } watermarkSetting)
        {
            string text = watermarkSetting.Value.TrimEnd('%');
            if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out watermark) || watermark is < 1 or > 100)
            {
                throw watermarkSetting.Fail("a percentage of the memory limit from 1 to 100 is required");
            }
        }

        int? deferred = null;
        if (device.DeferredFreeCapacity is { } deferredSetting && !deferredSetting.Value.Equals("auto", StringComparison.OrdinalIgnoreCase))
        {
            if (!int.TryParse(deferredSetting.Value, NumberStyles.None, CultureInfo.InvariantCulture, out int capacity)
                || capacity > Device.ZramDeviceOptions.MaxDeferredFreeCapacity)
            {
                // 0 turns the queue off: every free happens on the request path (the trims' baseline in the benchmark).
                throw deferredSetting.Fail("auto (one per block) or a whole number of queued frees from 0 (off: every free synchronous) to 16777216 is required");
            }

            deferred = capacity;
        }

        bool readOnly = device.ReadOnly is { } readOnlySetting && ParseBoolean(readOnlySetting);
        bool dedup = device.Dedup is { } dedupSetting && ParseBoolean(dedupSetting);

        string? recompressAlgorithm = device.RecompressAlgorithm is { } recompressSetting && recompressSetting.Value.Trim() is not ("none" or "")
            ? ParseAlgorithm(recompressSetting, recompressSetting.Value)
            : null;
        if (listedRecompress is not null)
        {
            recompressAlgorithm = device.RecompressAlgorithm is { } both
                ? throw both.Fail(recompressAlgorithm is null
                    ? $"turns recompression off, but compression-algorithm names a second algorithm to recompress with ({listedRecompress}); keep one"
                    : $"the recompression algorithm is given twice: recompress-algorithm is set here and compression-algorithm names a second algorithm ({listedRecompress}); keep one")
                : listedRecompress;
        }
        TimeSpan idleAfter = DeviceConfiguration.DefaultRecompressIdleAfter;
        if (device.RecompressIdleAfter is { } idleSetting)
        {
            idleAfter = ParseDuration(idleSetting);
        }

        int cpuPercent = DeviceConfiguration.DefaultRecompressCpuPercent;
        if (device.RecompressCpuPercent is { } cpuSetting
            && (!int.TryParse(cpuSetting.Value.TrimEnd('%'), NumberStyles.None, CultureInfo.InvariantCulture, out cpuPercent) || cpuPercent is < 1 or > 100))
        {
            throw cpuSetting.Fail("a percentage of one CPU from 1 to 100 is required");
        }

        int dictionary = 0;
        if (device.RecompressDictionary is { } dictionarySetting && dictionarySetting.Value.Trim() is not ("none" or "no" or "0" or ""))
        {
            if (!SizeParser.TryParse(dictionarySetting.Value, out long dictionaryBytes, out string dictionaryError))
            {
                throw dictionarySetting.Fail(dictionaryError);
            }

            if (dictionaryBytes is < Device.ZramDevice.MinDictionarySize or > Device.ZramDevice.MaxDictionarySize)
            {
                throw dictionarySetting.Fail("a dictionary size from 4K to 4M is required (or none)");
            }

            if (recompressAlgorithm is null || !recompressAlgorithm.StartsWith("zstd", StringComparison.Ordinal))
            {
                throw dictionarySetting.Fail("a dictionary needs recompress-algorithm = zstd[:LEVEL] in the same section");
            }

            dictionary = (int)dictionaryBytes;
        }

        string? writebackFile = null;
        if (device.WritebackFile is { } fileSetting)
        {
            const string fileRequired = "a file in an existing directory is required (it is created, and deleted at exit)";
            if (fileSetting.Value.Length == 0 || fileSetting.Value.EndsWith('/'))
            {
                throw fileSetting.Fail(fileRequired);
            }

            if (!FilePath.TryGetFullPath(fileSetting.Value, out writebackFile, out string pathError))
            {
                throw fileSetting.Fail(pathError);
            }

            string? folder = Path.GetDirectoryName(writebackFile);
            if (folder is null || !Directory.Exists(folder))
            {
                throw fileSetting.Fail(fileRequired);
            }

            // Else the device's open fails with EISDIR only after memory was locked.
            if (Directory.Exists(writebackFile))
            {
                throw fileSetting.Fail($"that is a directory: {fileRequired}");
            }

            if (writebackFile.StartsWith("/dev/", StringComparison.Ordinal))
            {
                throw fileSetting.Fail("zramd writes back to a file, not a device (zram-generator's writeback-device): give a path on a filesystem");
            }
        }

        int writebackWatermark = DeviceConfiguration.DefaultWritebackWatermarkPercent;
        if (device.WritebackWatermark is { } wbWatermarkSetting
            && (!int.TryParse(wbWatermarkSetting.Value.TrimEnd('%'), NumberStyles.None, CultureInfo.InvariantCulture, out writebackWatermark) || writebackWatermark is < 1 or > 100))
        {
            throw wbWatermarkSetting.Fail("a percentage of the memory limit from 1 to 100 is required");
        }

        long writebackLimit = 0;
        if (device.WritebackLimit is { } wbLimitSetting)
        {
            if (!SizeParser.TryParse(wbLimitSetting.Value, out writebackLimit, out string wbLimitError))
            {
                throw wbLimitSetting.Fail($"bytes per day (K/M/G/T suffixes; 0: no limit): {wbLimitError}");
            }

            if (Control.DeviceSetting.RefuseWritebackLimit(writebackLimit) is { } refused)
            {
                throw wbLimitSetting.Fail(refused);
            }
        }

        RequireCompanion(device.RecompressIdleAfter, recompressAlgorithm is not null, "recompress-algorithm");
        RequireCompanion(device.RecompressCpuPercent, recompressAlgorithm is not null, "recompress-algorithm");
        RequireCompanion(device.RecompressDictionary, recompressAlgorithm is not null, "recompress-algorithm");
        RequireCompanion(device.WritebackWatermark, writebackFile is not null, "writeback-file");
        RequireCompanion(device.WritebackLimit, writebackFile is not null, "writeback-file");

        string? attach = null;
        if (device.Attach is { } attachSetting)
        {
            attach = attachSetting.Value;
            // The attach's own parser, so that what passes here is what the start takes (no leading zero, an int).
            if (!attach.StartsWith("/dev/nbd", StringComparison.Ordinal) || !Attach.KernelNbdAttachment.TryParseDevice(attach, out _))
            {
                throw attachSetting.Fail("a kernel nbd device like /dev/nbd0 is required (no leading zero)");
            }
        }

        long minimumLimit = Device.ZramDevice.MinimumMemLimitFor(diskSize, dedup);
        if (memLimit != 0 && memLimit < minimumLimit)
        {
            // Checked here, where the dedup index's arrays are known: the device would take it and refuse every write.
            throw device.MemLimit!.Fail($"the memory limit comes to {memLimit} bytes, below the {minimumLimit} this device needs (its slot table, the pool's metadata and what a first stored page takes; 0 means no limit)");
        }

        return new DeviceConfiguration
        {
            Name = device.Name,
            DiskSize = diskSize,
            SizeSetting = device.Size ?? DefaultSizeSetting with { Origin = $"[{device.Name}] zram-size (the default)" },
            Algorithm = algorithm,
            MemLimit = memLimit,
            CompactWatermarkPercent = watermark,
            DeferredFreeCapacity = deferred,
            ReadOnly = readOnly,
            Attach = attach,
            RecompressAlgorithm = recompressAlgorithm,
            RecompressIdleAfter = idleAfter,
            RecompressCpuPercent = cpuPercent,
            RecompressDictionarySize = dictionary,
            WritebackFile = writebackFile,
            WritebackFileSetting = device.WritebackFile,
            WritebackWatermarkPercent = writebackWatermark,
            WritebackLimitPerDay = writebackLimit,
            Dedup = dedup,
        };
    }

    /// <summary>A key that only tunes another (the recompressor's pace, the writeback's bounds): without that one
    /// in the same section it would be taken and do nothing.</summary>
    private static void RequireCompanion(Setting? setting, bool companionSet, string companion)
    {
        if (setting is not null && !companionSet)
        {
            throw setting.Fail($"has no effect without {companion} in the same section");
        }
    }

    /// <summary>tls-certificate or tls-key (file or ZRAMD_TLS_*) while tls-mode is off, as <see cref="RequireCompanion"/>
    /// refuses a key that only tunes another.</summary>
    private static void RequireTls(Setting? setting)
    {
        if (setting is not null)
        {
            throw setting.Fail("has no effect while tls-mode is off: set tls-mode = optional or required (ZRAMD_TLS_MODE), or remove it");
        }
    }

    /// <summary>The control socket's path from <c>control</c>, ZRAMD_CONTROL or --control, for the daemon and the verbs.</summary>
    internal static string ControlSocketPath(Setting setting)
    {
        if (setting.Value.Length == 0 || setting.Value.EndsWith('/'))
        {
            throw setting.Fail("the control socket needs a file path, e.g. /run/zramd/zramd.ctl");
        }

        return ListenAddress.TryGetSocketPath(setting.Value, out string? fullPath, out string error) ? fullPath : throw setting.Fail(error);
    }

    /// <summary>A size in bytes: a plain size (K/M/G/T suffix, else bytes) from the command line and
    /// environment, a zram-generator expression of ram in MiB from the file.</summary>
    private static long EvaluateSize(Setting setting, double? ramMiB)
    {
        if (setting.IsPlainSize)
        {
            return SizeParser.TryParse(setting.Value, out long bytes, out string sizeError) ? bytes : throw setting.Fail(sizeError);
        }

        if (!RamExpression.TryEvaluate(setting.Value, ramMiB, out double mib, out string error))
        {
            throw setting.Fail(error);
        }

        double bytesValue = Math.Floor(mib * 1024 * 1024);
        if (bytesValue > 1L << 50)
        {
            throw setting.Fail($"comes to {mib:0} MiB, more than the 1 PiB zramd accepts");
        }

        return (long)bytesValue;
    }

    /// <summary>
    /// zram-generator's compression-algorithm list: the first compresses, a second recompresses (what
    /// recompress-algorithm sets); a last group of parameters alone, "(type=idle)", is what zram-generator writes to
    /// recompress when it sets the device up, still empty, where it does nothing: so it does nothing here either.
    /// zramd has one recompression algorithm: a third is refused.
    /// </summary>
    private static (string First, string? Second) SplitAlgorithmList(Setting setting)
    {
        if (AlgorithmListWord().Replace(setting.Value, string.Empty).Trim().Length != 0)
        {
            throw setting.Fail("a parenthesis is not closed or not opened: write zstd(level=3), and a group of recompress parameters alone, (type=idle), last");
        }

        string[] words = AlgorithmListWord().Matches(setting.Value).Select(m => m.Value).ToArray();
        int count = words.Length > 1 && words[^1].StartsWith('(') ? words.Length - 1 : words.Length;
        if (words.Take(count).Any(w => w.StartsWith('(')))
        {
            throw setting.Fail("a group of parameters alone comes last, once: the recompress parameters zram-generator writes at setup, (type=idle)");
        }

        if (count < words.Length && words[^1].Trim('(', ')').Split([',', ' '], StringSplitOptions.RemoveEmptyEntries)
                .Any(p => p.Split('=')[0] is not ("type" or "max_pages" or "threshold" or "algo" or "priority")))
        {
            throw setting.Fail($"{words[^1]}: a group alone holds recompress parameters (type=, max_pages=, threshold=, algo=, priority=); an algorithm's own go right after it: zstd(level=3)");
        }

        if (count is 0 or > 2)
        {
            throw setting.Fail("an algorithm, and at most one more to recompress with (zramd has one recompression algorithm): lz4, lz4hc[:LEVEL] or zstd[:LEVEL]");
        }

        return (words[0], count == 2 ? words[1] : null);
    }

    /// <summary>zramd's "zstd:3" or zram-generator's "zstd(level=3)" (<see cref="Compression.CompressionSpec"/>).</summary>
    private static string ParseAlgorithm(Setting setting, string text)
    {
        text = text.Trim();
        if (text.Contains(' ', StringComparison.Ordinal))
        {
            throw setting.Fail("one algorithm: lz4, lz4hc[:LEVEL] or zstd[:LEVEL]");
        }

        return AlgorithmValidator.Validate(text, setting);
    }

    private static X509Certificate2 LoadCertificate(DaemonValues daemon)
    {
        Setting mode = daemon.TlsMode!;
        if (daemon.TlsCertificate is not { } certificate)
        {
            throw mode.Fail("TLS needs tls-certificate (a PEM file) and tls-key (ZRAMD_TLS_CERTIFICATE, ZRAMD_TLS_KEY)");
        }

        if (!File.Exists(certificate.Value))
        {
            throw certificate.Fail(NoSuchFile(certificate.Value));
        }

        if (daemon.TlsKey is { } key && !File.Exists(key.Value))
        {
            throw key.Fail(NoSuchFile(key.Value));
        }

        // Read here rather than by CreateFromPemFile, so that a file that cannot be read (a root-only key, zramd run as
        // a user) is reported under its own key. Without tls-key the key is looked for in the certificate's file.
        string certificatePem = ReadPem(certificate);
        string keyPem = daemon.TlsKey is { } keySetting ? ReadPem(keySetting) : certificatePem;
        try
        {
            // The certificate alone first, so that a file holding none is named as itself, not as the key.
            using var alone = X509Certificate2.CreateFromPem(certificatePem);
        }
        catch (CryptographicException e)
        {
            throw certificate.Fail($"no PEM certificate in the file: {e.Message}");
        }

        try
        {
            using var pem = X509Certificate2.CreateFromPem(certificatePem, keyPem);
            if (!pem.HasPrivateKey)
            {
                throw certificate.Fail("the certificate has no private key: set tls-key");
            }

            // SslStream on Linux wants a certificate whose key is not ephemeral: round-trip through PKCS#12.
            return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            // ArgumentException: a key of the same type that is not the certificate's ("the public key does not match").
            throw (daemon.TlsKey ?? certificate).Fail($"cannot load the certificate and key: {e.Message}");
        }
    }

    /// <summary>Whether two full paths reach one file (or will, once it is made).</summary>
    private static bool SameFile(string a, string b) => a == b || FileIdentity.Of(a) == FileIdentity.Of(b);

    /// <summary>Why a file setting names no file: a directory is one, but not a file.</summary>
    private static string NoSuchFile(string path) => Directory.Exists(path) ? "a directory, not a file" : "no such file";

    /// <summary>tls-client-ca: the PEM certificates of the authorities whose client certificates are served. A chain must
    /// end at one of the file's self-signed roots (an intermediate alone is no anchor for .NET's chain building), so a
    /// file without a root would refuse every client: it is refused here instead.</summary>
    private static X509Certificate2Collection LoadAuthorities(Setting file)
    {
        if (!File.Exists(file.Value))
        {
            throw file.Fail(NoSuchFile(file.Value));
        }

        var authorities = new X509Certificate2Collection();
        try
        {
            authorities.ImportFromPem(ReadPem(file));
        }
        catch (CryptographicException e)
        {
            throw file.Fail($"cannot read the certificates: {e.Message}");
        }

        if (authorities.Count == 0)
        {
            throw file.Fail("no PEM certificate in the file: it holds the authorities (CA certificates) that issue the clients' certificates");
        }

        return authorities.Any(a => a.SubjectName.RawData.AsSpan().SequenceEqual(a.IssuerName.RawData))
            ? authorities
            : throw file.Fail("no root authority (a self-signed CA certificate) in the file: a client's certificate must chain up to one; intermediates go beside their root");
    }

    private static string ReadPem(Setting file)
    {
        string? text;
        try
        {
            text = BoundedFile.TryReadAllText(file.Value);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw file.Fail($"cannot read the file: {e.Message}");
        }

        return text ?? throw file.Fail($"the file holds more than {BoundedFile.MaxBytes >> 20} MiB, the most zramd reads of a PEM certificate or key");
    }

    /// <summary>A duration: seconds, or a number with s, min or h (systemd's spellings); 0 turns the feature off.
    /// At most <see cref="MaxDurationSeconds"/> whatever the unit (10^9 hours would be past TimeSpan.MaxValue).</summary>
    private static TimeSpan ParseDuration(Setting setting)
    {
        Match match = DurationText().Match(setting.Value.Trim());
        if (!match.Success || !long.TryParse(match.Groups["n"].Value, NumberStyles.None, CultureInfo.InvariantCulture, out long n) || n > MaxDurationSeconds)
        {
            throw setting.Fail("a duration is required: seconds, or a number with s, min or h (e.g. 600, 10min, 2h; 0: only on request)");
        }

        long unit = match.Groups["unit"].Value switch
        {
            "min" or "m" => 60,
            "h" => 3600,
            _ => 1,
        };
        long seconds = n * unit;
        return seconds <= MaxDurationSeconds
            ? TimeSpan.FromSeconds(seconds)
            : throw setting.Fail($"at most {MaxDurationSeconds} seconds (about 31 years) is possible (0: only on request)");
    }

    private static bool ParseBoolean(Setting setting) => setting.Value.ToLowerInvariant() switch
    {
        "yes" or "true" or "on" or "1" => true,
        "no" or "false" or "off" or "0" => false,
        _ => throw setting.Fail("use yes or no"),
    };

    /// <summary>A whole number from 1 to <paramref name="ceiling"/>, or the default when not set.</summary>
    private static int ParseCount(Setting? setting, int defaultValue, int ceiling, string what)
    {
        if (setting is null)
        {
            return defaultValue;
        }

        return int.TryParse(setting.Value, NumberStyles.None, CultureInfo.InvariantCulture, out int value) && value >= 1 && value <= ceiling
            ? value
            : throw setting.Fail($"a whole number of {what} from 1 to {ceiling} is required");
    }

    [GeneratedRegex("^(?<n>[0-9]+) ?(?<unit>s|min|m|h)?$")]
    private static partial Regex DurationText();

    /// <summary>Whether <paramref name="name"/> names a device as the configuration does: zram0, zram1, ...</summary>
    internal static bool IsDeviceName(string name) => DeviceName().IsMatch(name);

    // zramN as the kernel numbers them: no leading zero ([zram01] beside [zram1] made two devices), at most 9 digits (a
    // name of thousands passed here and failed the start with a stack trace: NBD export names end at 4096 bytes).
    [GeneratedRegex("^zram(?:0|[1-9][0-9]{0,8})$")]
    private static partial Regex DeviceName();



    /// <summary>A word of a compression-algorithm list: a name with its parameters in parentheses (which may hold
    /// spaces), or a group of parameters alone.</summary>
    [GeneratedRegex(@"[^\s(]+(?:\([^)]*\))?|\([^)]*\)")]
    private static partial Regex AlgorithmListWord();

    private sealed class DaemonValues
    {
        public Setting? Listen { get; set; }
        public Setting? SocketMode { get; set; }
        public Setting? SocketGroup { get; set; }
        public Setting? Control { get; set; }
        public Setting? TlsMode { get; set; }
        public Setting? TlsCertificate { get; set; }
        public Setting? TlsKey { get; set; }
        public Setting? TlsClientCa { get; set; }
        public Setting? LockMemory { get; set; }
        public Setting? LogLevel { get; set; }
        public Setting? MaxConnections { get; set; }
        public Setting? MaxInFlight { get; set; }
        public Setting? ThreadsPerConnection { get; set; }
        public Setting? MaxPayload { get; set; }
        public Setting? HandshakeTimeout { get; set; }
        public Setting? BusyPoll { get; set; }
    }

    private sealed class DeviceValues(string name)
    {
        public string Name { get; } = name;
        public Setting? Size { get; set; }
        public Setting? Algorithm { get; set; }

        /// <summary>--algorithm or ZRAMD_ALGORITHM: one algorithm, in place of the first of <see cref="Algorithm"/>.</summary>
        public Setting? AlgorithmOverride { get; set; }
        public Setting? MemLimit { get; set; }
        public Setting? CompactWatermark { get; set; }
        public Setting? DeferredFreeCapacity { get; set; }
        public Setting? ReadOnly { get; set; }
        public Setting? Attach { get; set; }
        public Setting? RecompressAlgorithm { get; set; }
        public Setting? RecompressIdleAfter { get; set; }
        public Setting? RecompressCpuPercent { get; set; }
        public Setting? RecompressDictionary { get; set; }
        public Setting? WritebackFile { get; set; }
        public Setting? WritebackWatermark { get; set; }
        public Setting? WritebackLimit { get; set; }
        public Setting? Dedup { get; set; }
    }
}
