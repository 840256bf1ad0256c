using System.Globalization;
using System.Net;
using Nbd;
using ZramDaemon.Configuration;
using ZramDaemon.Device;
using ZramDaemon.Tests.Daemon;

namespace ZramDaemon.Tests.Configuration;

public sealed class ConfigurationLoaderTests : IDisposable
{
    private const long MiB = 1024 * 1024;
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-config-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private SystemFacts Facts(double ramMiB = 16384, bool root = false, params (string Name, string Value)[] env) => new()
    {
        RamMiB = ramMiB,
        IsRoot = root,
        Environment = env.ToDictionary(e => e.Name, e => e.Value),
        DefaultConfigFile = Path.Combine(_dir, "absent.conf"),
    };

    private string WriteConfig(string text)
    {
        string path = Path.Combine(_dir, $"zramd-{Guid.NewGuid():N}.conf");
        File.WriteAllText(path, text);
        return path;
    }

    private static ZramdConfiguration Load(SystemFacts facts, CommandLineSettings? flags = null) =>
        ConfigurationLoader.Load(flags ?? new CommandLineSettings(), facts);

    [Theory]
    [InlineData(16384, 4096)]
    [InlineData(24106, 4096)]
    [InlineData(4000, 2000)]
    [InlineData(1000.5, 500.25)]
    public void The_embedded_default_is_one_zram0_of_min_ram_half_4096(double ram, double expectedMiB)
    {
        ZramdConfiguration config = Load(Facts(ram, env: ("XDG_RUNTIME_DIR", "/run/user/1000")));
        DeviceConfiguration device = Assert.Single(config.Devices);
        Assert.Equal("zram0", device.Name);

        // Rounded up to whole pages, as zram's disksize is.
        Assert.Equal((long)Math.Ceiling(expectedMiB * MiB / 4096) * 4096, device.DiskSize);
        Assert.Equal("lz4", device.Algorithm);
        Assert.Equal(0, device.MemLimit);
        Assert.Equal(90, device.CompactWatermarkPercent);
        Assert.Null(config.ConfigPath);
    }

    [Fact]
    public void Default_sockets_follow_runtime_directory_then_root_then_xdg()
    {
        ZramdConfiguration systemd = Load(Facts(root: true, env: [("RUNTIME_DIRECTORY", "/run/zramd-unit:/run/other"), ("XDG_RUNTIME_DIR", "/run/user/0")]));
        Assert.Equal("unix:/run/zramd-unit/zramd.sock", Assert.Single(systemd.Listen).ToString());
        Assert.Equal("/run/zramd-unit/zramd.ctl", systemd.ControlPath);

        ZramdConfiguration root = Load(Facts(root: true, env: ("XDG_RUNTIME_DIR", "/run/user/0")));
        Assert.Equal("unix:/run/zramd/zramd.sock", Assert.Single(root.Listen).ToString());
        Assert.True(root.LockMemory);

        ZramdConfiguration user = Load(Facts(root: false, env: ("XDG_RUNTIME_DIR", "/run/user/1000")));
        Assert.Equal("unix:/run/user/1000/zramd.sock", Assert.Single(user.Listen).ToString());
        Assert.Equal("/run/user/1000/zramd.ctl", user.ControlPath);
        Assert.False(user.LockMemory);

        var e = Assert.Throws<ConfigurationException>(() => Load(Facts(root: false)));
        Assert.Contains("--listen unix:PATH", e.Message, StringComparison.Ordinal);
        Assert.Equal(78, e.ExitCode);
    }

    [Fact]
    public void The_control_socket_goes_beside_the_first_unix_socket()
    {
        ZramdConfiguration config = Load(Facts(), new CommandLineSettings { Listen = ["tcp:127.0.0.1:10810", "unix:/tmp/a/b.sock"] });
        Assert.Equal(["tcp:127.0.0.1:10810", "unix:/tmp/a/b.sock"], config.Listen.Select(l => l.ToString()));
        Assert.Equal("/tmp/a/zramd.ctl", config.ControlPath);
    }

    [Fact]
    public void Socket_paths_that_do_not_fit_a_unix_socket_address_are_refused_the_default_ones_too()
    {
        string deep = "/" + new string('r', 100);
        var control = Assert.Throws<ConfigurationException>(() => Load(Facts(), new CommandLineSettings { Listen = ["tcp:"], ControlPath = deep + "/zramd.ctl" }));
        Assert.StartsWith($"option --control = '{deep}/zramd.ctl': the socket path is longer than the 107 bytes", control.Message, StringComparison.Ordinal);
        Assert.Equal(64, control.ExitCode);

        // The listen path fits, zramd.ctl beside it does not.
        var beside = Assert.Throws<ConfigurationException>(() => Load(Facts(), new CommandLineSettings { Listen = [$"unix:{deep}/a.s"] }));
        Assert.StartsWith($"option --listen = 'unix:{deep}/a.s': the control socket beside it, {deep}/zramd.ctl: the socket path is longer", beside.Message, StringComparison.Ordinal);

        var runtime = Assert.Throws<ConfigurationException>(() => Load(Facts(env: ("XDG_RUNTIME_DIR", deep))));
        Assert.StartsWith($"{deep}/zramd.sock, the default socket path", runtime.Message, StringComparison.Ordinal);
        Assert.Equal(78, runtime.ExitCode);

        var tcpOnly = Assert.Throws<ConfigurationException>(() => Load(Facts(env: ("XDG_RUNTIME_DIR", deep)), new CommandLineSettings { Listen = ["tcp:"] }));
        Assert.StartsWith($"{deep}/zramd.ctl, the default socket path", tcpOnly.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_largest_size_is_the_largest_the_device_takes()
    {
        Assert.Equal(ZramDevice.MaxDiskSize, (long)Array.MaxLength * ZramDevice.PageSize);
        ZramdConfiguration largest = Load(Facts(env: ("XDG_RUNTIME_DIR", "/r")), new CommandLineSettings { Size = ZramDevice.MaxDiskSize.ToString(CultureInfo.InvariantCulture) });
        Assert.Equal(ZramDevice.MaxDiskSize, Assert.Single(largest.Devices).DiskSize);

        var e = Assert.Throws<ConfigurationException>(() => Load(Facts(env: ("XDG_RUNTIME_DIR", "/r")), new CommandLineSettings { Size = (ZramDevice.MaxDiskSize + 1).ToString(CultureInfo.InvariantCulture) }));
        Assert.Contains("a device holds at most 8796092788736", e.Message, StringComparison.Ordinal);
        Assert.Equal(64, e.ExitCode);
    }

    [Fact]
    public void A_file_with_two_devices_and_daemon_settings()
    {
        string path = WriteConfig("""
            # two devices, zram-generator style
            [zramd]
            listen = unix:/tmp/z/zramd.sock tcp:127.0.0.1:10811
            socket-mode = 0600
            socket-group = root
            lock-memory = no

            [zram0]
            zram-size = ram / 4
            compression-algorithm = zstd(level=5)
            zram-resident-limit = ram / 8
            compact-watermark = 80%

            [zram1]
            zram-size = 64
            compression-algorithm = lz4hc:9
            deferred-free-capacity = 1024
            read-only = yes
            """);
        ZramdConfiguration config = Load(Facts(ramMiB: 8192, root: true), new CommandLineSettings { ConfigPath = path });
        Assert.Equal(path, config.ConfigPath);
        Assert.Equal(2, config.Listen.Count);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 10811), config.Listen[1].EndPoint);
        Assert.Equal(0x180, config.SocketMode);
        Assert.Equal("root", config.SocketGroup);
        Assert.False(config.LockMemory);
        Assert.Equal("/tmp/z/zramd.ctl", config.ControlPath);

        Assert.Equal(["zram0", "zram1"], config.Devices.Select(d => d.Name));
        DeviceConfiguration zram0 = config.Devices[0], zram1 = config.Devices[1];
        Assert.Equal(2048 * MiB, zram0.DiskSize);
        Assert.Equal("zstd:5", zram0.Algorithm);
        Assert.Equal(1024 * MiB, zram0.MemLimit);
        Assert.Equal(80, zram0.CompactWatermarkPercent);
        Assert.False(zram0.ReadOnly);
        Assert.Equal(64 * MiB, zram1.DiskSize);
        Assert.Equal("lz4hc:9", zram1.Algorithm);
        Assert.Equal(1024, zram1.DeferredFreeCapacity);
        Assert.True(zram1.ReadOnly);
    }

    [Fact]
    public void Environment_overrides_the_file_and_flags_override_both()
    {
        string path = WriteConfig("[zramd]\nlisten = unix:/tmp/file.sock\n[zram0]\nzram-size = 100\ncompression-algorithm = lz4hc\nzram-resident-limit = 50\n[zram1]\n");
        SystemFacts facts = Facts(env:
        [
            ("ZRAMD_CONFIG", path),
            ("ZRAMD_LISTEN", "unix:/tmp/env.sock,tcp:127.0.0.1:1"),
            ("ZRAMD_SIZE", "200M"),
            ("ZRAMD_ALGORITHM", "zstd"),
        ]);

        ZramdConfiguration fromEnvironment = Load(facts);
        Assert.Equal(["unix:/tmp/env.sock", "tcp:127.0.0.1:1"], fromEnvironment.Listen.Select(l => l.ToString()));
        Assert.All(fromEnvironment.Devices, d => Assert.Equal(200 * MiB, d.DiskSize));
        Assert.All(fromEnvironment.Devices, d => Assert.Equal("zstd:3", d.Algorithm));
        Assert.Equal(50 * MiB, fromEnvironment.Devices[0].MemLimit);

        ZramdConfiguration fromFlags = Load(facts, new CommandLineSettings
        {
            Listen = ["unix:/tmp/flag.sock"],
            Size = "1G",
            MemLimit = "300M",
            ControlPath = "/tmp/flag.ctl",
        });
        Assert.Equal("unix:/tmp/flag.sock", Assert.Single(fromFlags.Listen).ToString());
        Assert.Equal("/tmp/flag.ctl", fromFlags.ControlPath);
        Assert.All(fromFlags.Devices, d => Assert.Equal(1L << 30, d.DiskSize));
        Assert.All(fromFlags.Devices, d => Assert.Equal(300 * MiB, d.MemLimit));
        Assert.All(fromFlags.Devices, d => Assert.Equal("zstd:3", d.Algorithm));
    }

    [Fact]
    public void Deferred_free_capacity_zero_turns_the_queue_off()
    {
        string path = WriteConfig("[zram0]\nzram-size = 8\ndeferred-free-capacity = 0\n");
        ZramdConfiguration config = Load(Facts(env: ("XDG_RUNTIME_DIR", "/run/user/1")), new CommandLineSettings { ConfigPath = path });
        Assert.Equal(0, config.Devices[0].DeferredFreeCapacity);
    }

    [Fact]
    public void Deferred_free_capacity_is_auto_by_default_and_when_so_written()
    {
        string path = WriteConfig("[zram0]\nzram-size = 8\n[zram1]\nzram-size = 8\ndeferred-free-capacity = Auto\n[zram2]\nzram-size = 8\ndeferred-free-capacity = 16777216\n");
        ZramdConfiguration config = Load(Facts(env: ("XDG_RUNTIME_DIR", "/run/user/1")), new CommandLineSettings { ConfigPath = path });
        Assert.Null(config.Devices[0].DeferredFreeCapacity);
        Assert.Null(config.Devices[1].DeferredFreeCapacity);
        Assert.Equal(1 << 24, config.Devices[2].DeferredFreeCapacity);
    }

    [Fact]
    public void Recompression_keys_set_the_algorithm_idle_time_and_cpu_budget()
    {
        string path = WriteConfig("[zram0]\nzram-size = 8\nrecompress-algorithm = zstd(level=9)\nrecompress-idle-after = 15min\nrecompress-cpu-percent = 25%\n"
            + "[zram1]\nzram-size = 8\nrecompress-algorithm = lz4hc\nrecompress-idle-after = 0\n[zram2]\nzram-size = 8\n");
        ZramdConfiguration config = Load(Facts(env: ("XDG_RUNTIME_DIR", "/run/user/1")), new CommandLineSettings { ConfigPath = path });
        Assert.Equal("zstd:9", config.Devices[0].RecompressAlgorithm);
        Assert.Equal(TimeSpan.FromMinutes(15), config.Devices[0].RecompressIdleAfter);
        Assert.Equal(25, config.Devices[0].RecompressCpuPercent);
        Assert.Equal("lz4hc:9", config.Devices[1].RecompressAlgorithm);
        Assert.Equal(TimeSpan.Zero, config.Devices[1].RecompressIdleAfter);
        Assert.Equal(DeviceConfiguration.DefaultRecompressCpuPercent, config.Devices[1].RecompressCpuPercent);
        Assert.Null(config.Devices[2].RecompressAlgorithm);
        Assert.Equal(DeviceConfiguration.DefaultRecompressIdleAfter, config.Devices[2].RecompressIdleAfter);
    }

    /// <summary>zram-generator's list: the second algorithm recompresses; a last group of parameters alone (what
    /// zram-generator writes to recompress on the empty device) does nothing.</summary>
    [Fact]
    public void A_compression_algorithm_list_sets_the_recompression_algorithm_as_zram_generator_does()
    {
        string path = WriteConfig("[zram0]\nzram-size = 8\ncompression-algorithm = lz4 zstd(level=3) (type=idle)\n"
            + "[zram1]\nzram-size = 8\ncompression-algorithm = zstd(level=2)   lz4hc\n[zram2]\nzram-size = 8\ncompression-algorithm = lz4hc:3\n");
        ZramdConfiguration config = Load(Facts(env: ("XDG_RUNTIME_DIR", "/run/user/1")), new CommandLineSettings { ConfigPath = path });
        Assert.Equal(("lz4", "zstd:3"), (config.Devices[0].Algorithm, config.Devices[0].RecompressAlgorithm));
        Assert.Equal(("zstd:2", "lz4hc:9"), (config.Devices[1].Algorithm, config.Devices[1].RecompressAlgorithm));
        Assert.Equal(("lz4hc:3", null), (config.Devices[2].Algorithm, config.Devices[2].RecompressAlgorithm));
    }

    [Theory]
    [InlineData("1000000000")]
    [InlineData("16666666min")]
    [InlineData("277777h")]
    public void The_longest_idle_time_is_about_31_years_in_any_unit(string text)
    {
        string path = WriteConfig($"[zram0]\nzram-size = 8\nrecompress-algorithm = zstd\nrecompress-idle-after = {text}\n");
        ZramdConfiguration config = Load(Facts(env: ("XDG_RUNTIME_DIR", "/run/user/1")), new CommandLineSettings { ConfigPath = path });
        Assert.InRange(config.Devices[0].RecompressIdleAfter, TimeSpan.FromSeconds(999_000_000), TimeSpan.FromSeconds(1_000_000_000));
    }

    [Fact]
    public void The_recompression_dictionary_key_takes_a_size_or_none()
    {
        string path = WriteConfig("[zram0]\nzram-size = 8\nrecompress-algorithm = zstd:6\nrecompress-dictionary = 256K\n"
            + "[zram1]\nzram-size = 8\nrecompress-algorithm = zstd\nrecompress-dictionary = none\n[zram2]\nzram-size = 8\nrecompress-algorithm = zstd\n");
        ZramdConfiguration config = Load(Facts(env: ("XDG_RUNTIME_DIR", "/run/user/1")), new CommandLineSettings { ConfigPath = path });
        Assert.Equal(256 << 10, config.Devices[0].RecompressDictionarySize);
        Assert.Equal(0, config.Devices[1].RecompressDictionarySize);
        Assert.Equal(0, config.Devices[2].RecompressDictionarySize);
    }

    [Fact]
    public void Writeback_keys_set_the_file_watermark_and_daily_limit()
    {
        string path = WriteConfig($"[zram0]\nzram-size = 8\nwriteback-file = {_dir}/zram0.wb\nwriteback-watermark = 70%\nwriteback-limit = 2G\ndedup = yes\n[zram1]\nzram-size = 8\n");
        ZramdConfiguration config = Load(Facts(env: ("XDG_RUNTIME_DIR", "/run/user/1")), new CommandLineSettings { ConfigPath = path });
        Assert.Equal(Path.Combine(_dir, "zram0.wb"), config.Devices[0].WritebackFile);
        Assert.Equal(70, config.Devices[0].WritebackWatermarkPercent);
        Assert.Equal(2L << 30, config.Devices[0].WritebackLimitPerDay);
        Assert.True(config.Devices[0].Dedup);
        Assert.False(config.Devices[1].Dedup);
        Assert.Null(config.Devices[1].WritebackFile);
        Assert.Equal(DeviceConfiguration.DefaultWritebackWatermarkPercent, config.Devices[1].WritebackWatermarkPercent);
        Assert.Equal(0, config.Devices[1].WritebackLimitPerDay);
    }

    [Fact]
    public void The_default_file_is_read_when_it_exists()
    {
        string path = WriteConfig("[zram3]\nzram-size = 8\n");
        SystemFacts facts = Facts(env: ("XDG_RUNTIME_DIR", "/run/user/1")) with { DefaultConfigFile = path };
        ZramdConfiguration config = Load(facts);
        Assert.Equal(path, config.ConfigPath);
        Assert.Equal("zram3", Assert.Single(config.Devices).Name);
    }

    public static TheoryData<string, string> BadFileValues => new()
    {
        { "[zram0]\nzram-size = ram / 0", "[zram0] zram-size = 'ram / 0': division by zero" },
        { "[zram0]\nzram-size = ram - ram", "[zram0] zram-size = 'ram - ram': the device size comes to 0 bytes" },
        { "[zram0]\nzram-size = lots", "[zram0] zram-size = 'lots': unknown name 'lots'" },
        { "[zram0]\nzram-size = ram * 1000000000", "[zram0] zram-size = 'ram * 1000000000': comes to" },
        { "[zram0]\nzram-resident-limit = -5", "[zram0] zram-resident-limit = '-5': the memory limit cannot be negative" },
        // 64M: a 128 KiB slot table, 16 KiB of pin counters, and 69660 bytes for a first stored page (see ZramDevice.MinimumMemLimitFor).
        { "[zram0]\nzram-size = 64M\nzram-resident-limit = 64K", "[zram0] zram-resident-limit = '64K': the memory limit comes to 65536 bytes, below the 217116 this device needs" },
        { "[zram0]\ncompression-algorithm = lzo", "[zram0] compression-algorithm = 'lzo': 'lzo' is not a compression algorithm" },
        { "[zram0]\ncompression-algorithm = zstd:30", "[zram0] compression-algorithm = 'zstd:30': 'zstd:30': the level of zstd must be a whole number from 1 to 22" },
        { "[zram0]\ncompression-algorithm = zstd lz4hc lz4", "[zram0] compression-algorithm = 'zstd lz4hc lz4': an algorithm, and at most one more to recompress with" },
        { "[zram0]\ncompression-algorithm = lzo-rle zstd", "[zram0] compression-algorithm = 'lzo-rle zstd': 'lzo-rle' is not a compression algorithm" },
        { "[zram0]\ncompression-algorithm = lz4 zstd(level=30)", "[zram0] compression-algorithm = 'lz4 zstd(level=30)': 'zstd:30': the level of zstd must be" },
        { "[zram0]\ncompression-algorithm = lz4 zstd\nrecompress-algorithm = lz4hc", "[zram0] recompress-algorithm = 'lz4hc': the recompression algorithm is given twice" },
        { "[zram0]\ncompression-algorithm = lz4 zstd\nrecompress-algorithm = none", "[zram0] recompress-algorithm = 'none': turns recompression off, but compression-algorithm names a second algorithm to recompress with (zstd:3); keep one" },
        { "[zram0]\ncompact-watermark = 101", "[zram0] compact-watermark = '101': a percentage" },
        { "[zram0]\ndeferred-free-capacity = -1", "[zram0] deferred-free-capacity = '-1': auto (one per block) or a whole number" },
        { "[zram0]\ndeferred-free-capacity = 16777217", "[zram0] deferred-free-capacity = '16777217': auto (one per block) or a whole number" },
        { "[zram0]\ndeferred-free-capacity = lots", "[zram0] deferred-free-capacity = 'lots': auto (one per block) or a whole number" },
        { "[zram0]\nread-only = maybe", "[zram0] read-only = 'maybe': use yes or no" },
        { "[zram0]\nrecompress-algorithm = brotli", "[zram0] recompress-algorithm = 'brotli': 'brotli' is not a compression algorithm" },
        { "[zram0]\nrecompress-idle-after = soon", "[zram0] recompress-idle-after = 'soon': a duration is required" },
        { "[zram0]\nrecompress-idle-after = 5d", "[zram0] recompress-idle-after = '5d': a duration is required" },
        { "[zram0]\nrecompress-cpu-percent = 0", "[zram0] recompress-cpu-percent = '0': a percentage of one CPU from 1 to 100" },
        { "[zram0]\nrecompress-algorithm = zstd\nrecompress-dictionary = 2k", "[zram0] recompress-dictionary = '2k': a dictionary size from 4K to 4M" },
        { "[zram0]\nrecompress-algorithm = zstd\nrecompress-dictionary = lots", "[zram0] recompress-dictionary = 'lots':" },
        { "[zram0]\nrecompress-algorithm = lz4hc\nrecompress-dictionary = 64K", "[zram0] recompress-dictionary = '64K': a dictionary needs recompress-algorithm = zstd" },
        { "[zram0]\nrecompress-dictionary = 64K", "[zram0] recompress-dictionary = '64K': a dictionary needs recompress-algorithm = zstd" },
        { "[zram0]\nwriteback-file = /no-such-dir-zramd/zram0.wb", "[zram0] writeback-file = '/no-such-dir-zramd/zram0.wb': a file in an existing directory" },
        { "[zram0]\nwriteback-file =", "[zram0] writeback-file = '': a file in an existing directory" },
        { "[zram0]\nwriteback-file = /tmp/a\0b.wb", "[zram0] writeback-file = '/tmp/a\\x00b.wb': a path cannot contain a NUL character" },
        { "[zram0]\nrecompress-idle-after = 277778h", "[zram0] recompress-idle-after = '277778h': at most 1000000000 seconds" },
        { "[zram0]\nzram-size = 8388608", "[zram0] zram-size = '8388608': the device size comes to 8796093022208 bytes: a device holds at most 8796092788736" },
        { "[zramd]\ncontrol =", "[zramd] control = '': the control socket needs a file path" },
        { "[zramd]\ncontrol = /run/zramd/a\0b.ctl", "[zramd] control = '/run/zramd/a\\x00b.ctl': a path cannot contain a NUL character" },
        { "[zramd]\nlisten = unix:/run/a\0b.sock", "[zramd] listen = 'unix:/run/a\\x00b.sock': a path cannot contain a NUL character" },
        { "[zram0]\nwriteback-file = /dev/sdb", "[zram0] writeback-file = '/dev/sdb': zramd writes back to a file, not a device" },
        { "[zram0]\nwriteback-watermark = 0", "[zram0] writeback-watermark = '0': a percentage of the memory limit" },
        { "[zram0]\ndedup = sometimes", "[zram0] dedup = 'sometimes': use yes or no" },
        { "[zram0]\nwriteback-limit = lots", "[zram0] writeback-limit = 'lots': bytes per day" },
        { "[zram0]\nwriteback-file = /tmp/zram0.wb\nwriteback-limit = 400", "[zram0] writeback-limit = '400': 400 bytes is less than a page, so nothing could be written back: the limit is in bytes per day (K/M/G/T suffixes; 0: no limit), not the kernel's 4K pages" },
        { "[zramd]\nlisten = tcp:127.0.0.1:10809\nsocket-mode = 0600", "[zramd] socket-mode = '0600': has no effect without a unix: listen address" },
        { "[zramd]\nlisten = tcp:127.0.0.1:10809\nsocket-group = disk", "[zramd] socket-group = 'disk': has no effect without a unix: listen address" },
        { "[zram0]\nwriteback-watermark = 70", "[zram0] writeback-watermark = '70': has no effect without writeback-file in the same section" },
        { "[zram0]\nwriteback-limit = 1G", "[zram0] writeback-limit = '1G': has no effect without writeback-file in the same section" },
        { "[zram0]\nwriteback-file = /tmp/zram0.wb\n[zram1]\nwriteback-limit = 1G", "[zram1] writeback-limit = '1G': has no effect without writeback-file in the same section" },
        { "[zram0]\nrecompress-idle-after = 5min", "[zram0] recompress-idle-after = '5min': has no effect without recompress-algorithm in the same section" },
        { "[zram0]\nrecompress-cpu-percent = 20", "[zram0] recompress-cpu-percent = '20': has no effect without recompress-algorithm in the same section" },
        { "[zram0]\nrecompress-dictionary = none", "[zram0] recompress-dictionary = 'none': has no effect without recompress-algorithm in the same section" },
        { "[zram0]\nrecompress-algorithm = none\nrecompress-idle-after = 0", "[zram0] recompress-idle-after = '0': has no effect without recompress-algorithm in the same section" },
        { "[zram0]\nwriteback-file = /tmp/zramd-shared.wb\n[zram1]\nwriteback-file = /tmp/../tmp/zramd-shared.wb", "[zram1] writeback-file = '/tmp/../tmp/zramd-shared.wb': [zram0] writeback-file is the same file" },
        { "[zramd]\nrecompress-algorithm = zstd", "[zramd] recompress-algorithm = 'zstd': unknown key in [zramd]: this is a device setting" },
        { "[zram0]\nattach = /dev/sda", "[zram0] attach = '/dev/sda': a kernel nbd device" },
        { "[zram0]\nattach = /dev/nbd0\n[zram1]\nattach = /dev/nbd0", "[zram1] attach = '/dev/nbd0': another device attaches" },
        { "[zram0]\nswap-priority = 100", "[zram0] swap-priority = '100': a zram-generator key that zramd does not implement" },
        { "[zram0]\nzram-sise = 100", "[zram0] zram-sise = '100': unknown key" },
        { "[zram0]\nlisten = unix:/x", "[zram0] listen = 'unix:/x': unknown key" },
        { "[zramd]\nzram-size = 100", "[zramd] zram-size = '100': unknown key in [zramd]: this is a device setting" },
        { "[zramd]\nlisten = udp:1.2.3.4:5", "[zramd] listen = 'udp:1.2.3.4:5': use unix:PATH or tcp:HOST:PORT" },
        { "[zramd]\nlisten = unix:/a.sock unix:/a.sock", "[zramd] listen = 'unix:/a.sock': listed twice" },
        { "[zramd]\nsocket-mode = 0999", "[zramd] socket-mode = '0999': not a permission mode" },
        { "[zramd]\nsocket-mode = 4755", "[zramd] socket-mode = '4755': not a permission mode" },
        { "[zramd]\nsocket-group = no-such-group-zramd", "[zramd] socket-group = 'no-such-group-zramd': no such group" },
        { "[zramd]\nsocket-group = 4294967295", "[zramd] socket-group = '4294967295':" },
        { "[zramd]\ntls-mode = sometimes", "[zramd] tls-mode = 'sometimes': use off, optional or required" },
        { "[zramd]\ntls-mode = required", "[zramd] tls-mode = 'required': TLS needs tls-certificate" },
        { "[zramd]\ntls-mode = optional\ntls-certificate = /nonexistent.pem", "[zramd] tls-certificate = '/nonexistent.pem': no such file" },
        { "[zramd]\ntls-mode = optional\ntls-certificate = /tmp", "[zramd] tls-certificate = '/tmp': a directory, not a file" },
        { "[zramd]\ntls-certificate = /etc/zramd/cert.pem", "[zramd] tls-certificate = '/etc/zramd/cert.pem': has no effect while tls-mode is off: set tls-mode = optional or required" },
        { "[zramd]\ntls-mode = off\ntls-key = /etc/zramd/key.pem", "[zramd] tls-key = '/etc/zramd/key.pem': has no effect while tls-mode is off" },
        { "[zramd]\ntls-mode = OFF\ntls-certificate = /etc/zramd/cert.pem\ntls-key = /etc/zramd/key.pem", "[zramd] tls-certificate = '/etc/zramd/cert.pem': has no effect while tls-mode is off" },
        { "[zramd]\nlock-memory = perhaps", "[zramd] lock-memory = 'perhaps': use yes or no" },
        { "[zramd]\nlog-level = chatty", "[zramd] log-level = 'chatty': use debug, info, warning or error" },
        { "[swap]\nzram-size = 1", ":1: [swap]: unknown section" },
        { "[zram01]\nzram-size = 1M", ":1: [zram01]: unknown section" },
        { "[zramd]\nmax-in-flight = 2\nthreads-per-connection = 8", "[zramd] threads-per-connection = '8': more than max-in-flight (2)" },
        { "[zram1234567890]\nzram-size = 1M", ":1: [zram1234567890]: unknown section" },
        { "[zramd]\nmax-connections = 0", "[zramd] max-connections = '0': a whole number of connections from 1 to 65536" },
        { "[zramd]\nmax-connections = 65537", "[zramd] max-connections = '65537': a whole number of connections from 1 to 65536" },
        { "[zramd]\nmax-connections = many", "[zramd] max-connections = 'many': a whole number of connections" },
        { "[zramd]\nmax-in-flight = 0", "[zramd] max-in-flight = '0': a whole number of requests in flight per connection from 1 to 4096" },
        { "[zramd]\nmax-in-flight = 4097", "[zramd] max-in-flight = '4097': a whole number of requests in flight" },
        { "[zramd]\nmax-in-flight = 1.5", "[zramd] max-in-flight = '1.5': a whole number of requests in flight" },
        { "[zramd]\nthreads-per-connection = 0", "[zramd] threads-per-connection = '0': a whole number of threads per connection from 1 to 64" },
        { "[zramd]\nthreads-per-connection = 65", "[zramd] threads-per-connection = '65': a whole number of threads per connection from 1 to 64" },
        { "[zramd]\nthreads-per-connection = four", "[zramd] threads-per-connection = 'four': a whole number of threads" },
        { "[zramd]\nmax-payload = 1K", "[zramd] max-payload = '1K': the largest READ or WRITE payload must be from 4K to 1G" },
        { "[zramd]\nmax-payload = 2G", "[zramd] max-payload = '2G': the largest READ or WRITE payload must be from 4K to 1G" },
        { "[zramd]\nmax-payload = huge", "[zramd] max-payload = 'huge': 'huge' is not a size" },
        { "[zramd]\nhandshake-timeout = 0", "[zramd] handshake-timeout = '0': a whole number of seconds from 1 to 3600" },
        { "[zramd]\nhandshake-timeout = 2m", "[zramd] handshake-timeout = '2m': a whole number of seconds" },
        { "[zramd]\nhandshake-timeout = 3601", "[zramd] handshake-timeout = '3601': a whole number of seconds" },
        { "[zramd]\nhandshake-timeout = -5", "[zramd] handshake-timeout = '-5': a whole number of seconds" },
        { "[zramd]\nbusy-poll = 1001", "[zramd] busy-poll = '1001': a whole number of microseconds from 0 (off) to 1000" },
        { "[zramd]\nbusy-poll = -1", "[zramd] busy-poll = '-1': a whole number of microseconds" },
        { "[zramd]\nbusy-poll = 50ms", "[zramd] busy-poll = '50ms': a whole number of microseconds" },
        { "[zramd]\nmax-sessions = 5", "[zramd] max-sessions = '5': unknown key: [zramd] takes" },
        { "[zram0]\nmax-payload = 1M", "[zram0] max-payload = '1M': unknown key: a device takes" },
    };

    [Theory]
    [MemberData(nameof(BadFileValues))]
    public void Every_bad_file_value_gets_one_line_naming_file_section_key_value_and_why(string text, string expected)
    {
        string path = WriteConfig(text);
        var e = Assert.Throws<ConfigurationException>(() => Load(Facts(env: ("XDG_RUNTIME_DIR", "/run/user/1")), new CommandLineSettings { ConfigPath = path }));
        Assert.StartsWith(path + ":", e.Message, StringComparison.Ordinal);
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Equal(78, e.ExitCode);
    }

    /// <summary>The smallest memory limit, the device's fixed metadata and what a first stored page takes, is
    /// accepted; dedup's index raises it; 0 is no limit.</summary>
    [Fact]
    public void The_smallest_memory_limit_is_accepted_and_dedup_raises_it()
    {
        // In bytes from --mem-limit: the file's plain numbers are MiB.
        long minimum = ZramDevice.MinimumMemLimitFor(64L << 20, dedup: false);
        SystemFacts facts = Facts(env: ("XDG_RUNTIME_DIR", "/run/user/1"));
        ZramdConfiguration Device(long limit, string keys = "") => Load(facts, new CommandLineSettings
        {
            ConfigPath = WriteConfig($"[zram0]\nzram-size = 64M\n{keys}\n"),
            MemLimit = limit.ToString(CultureInfo.InvariantCulture),
        });

        Assert.Equal(ZramDevice.RoundMemLimit(minimum), Assert.Single(Device(minimum).Devices).MemLimit); // whole pages
        Assert.Equal(0, Assert.Single(Device(0).Devices).MemLimit);
        var e = Assert.Throws<ConfigurationException>(() => Device(minimum, "dedup = yes"));
        Assert.Equal($"option --mem-limit = '{minimum}': the memory limit comes to {ZramDevice.RoundMemLimit(minimum)} bytes, below the {ZramDevice.MinimumMemLimitFor(64L << 20, dedup: true)} this device needs (its slot table, the pool's metadata and what a first stored page takes; 0 means no limit)", e.Message);
        Assert.Equal(64, e.ExitCode); // a command-line value: a usage error
    }

    /// <summary>Two writeback-files that are one file by another path: the check compared the paths' text, so these
    /// loaded, and the daemon's start then failed at the second device's open of the file ("The process cannot access
    /// the file ... because it is being used by another process", exit 1), naming no key.</summary>
    [Theory]
    [InlineData(WritebackFileAlias.SymlinkedDirectory)]
    [InlineData(WritebackFileAlias.SymlinkToTheFile)]
    [InlineData(WritebackFileAlias.DanglingSymlink)]
    [InlineData(WritebackFileAlias.HardLink)]
    [InlineData(WritebackFileAlias.DotDotAfterASymlink)]
    public void Two_writeback_files_that_are_one_file_by_another_path_are_refused_naming_both(string how)
    {
        (string first, string second) = WritebackFileAlias.Make(how, _dir);
        string path = WriteConfig($"[zram0]\nzram-size = 8M\nwriteback-file = {first}\n[zram1]\nzram-size = 8M\nwriteback-file = {second}\n");
        var e = Assert.Throws<ConfigurationException>(() => Load(Facts(env: ("XDG_RUNTIME_DIR", _dir)), new CommandLineSettings { ConfigPath = path }));
        Assert.Equal($"{path}:6 [zram1] writeback-file = '{second}': [zram0] writeback-file is the same file: each device needs its own", e.Message);
        Assert.Equal(78, e.ExitCode);
    }

    /// <summary>A path with <c>..</c> after a symlinked directory is the file the kernel opens: <c>..</c> is the
    /// parent of the link's target. Found by review: Path.GetFullPath took <c>link/..</c> away as text, so
    /// other/link/../f became other/f, a file the kernel would never open for that path.</summary>
    [Fact]
    public void A_dot_dot_after_a_symlink_is_the_parent_of_its_target_as_for_the_kernel()
    {
        (string first, string second) = WritebackFileAlias.Make(WritebackFileAlias.DotDotAfterASymlink, _dir);
        string path = WriteConfig($"[zram0]\nzram-size = 8M\nwriteback-file = {second}\n[zram1]\nzram-size = 8M\nwriteback-file = {_dir}/other/shared.wb\n"
            + $"[zram2]\nzram-size = 8M\nwriteback-file = {_dir}/real/sub/../../other/link/../second.wb\n");
        ZramdConfiguration config = Load(Facts(env: ("XDG_RUNTIME_DIR", _dir)), new CommandLineSettings { ConfigPath = path });
        Assert.Equal([first, $"{_dir}/other/shared.wb", $"{_dir}/real/second.wb"], config.Devices.Select(d => d.WritebackFile));

        // A .. under a directory that does not exist: the kernel's open fails, and so does the load, naming the key.
        string missing = WriteConfig($"[zram0]\nzram-size = 8M\nwriteback-file = {_dir}/none/../f.wb\n");
        var e = Assert.Throws<ConfigurationException>(() => Load(Facts(env: ("XDG_RUNTIME_DIR", _dir)), new CommandLineSettings { ConfigPath = missing }));
        Assert.EndsWith($"[zram0] writeback-file = '{_dir}/none/../f.wb': cannot resolve {_dir}/none/..: No such file or directory", e.Message, StringComparison.Ordinal);
    }

    /// <summary>Sockets are compared by the file they reach: one through a symlinked directory is the same socket (the
    /// start failed with "in use by another server", the other being zramd itself).</summary>
    [Fact]
    public void A_socket_reached_through_a_symlinked_directory_is_the_same_socket()
    {
        string real = Directory.CreateDirectory(Path.Combine(_dir, "real")).FullName;
        string link = Path.Combine(_dir, "link");
        Directory.CreateSymbolicLink(link, real);
        var facts = Facts(env: ("XDG_RUNTIME_DIR", _dir));

        var twice = Assert.Throws<ConfigurationException>(() => Load(facts, new CommandLineSettings { ConfigPath = WriteConfig($"[zramd]\nlisten = unix:{real}/a.sock unix:{link}/a.sock\n") }));
        Assert.EndsWith($"[zramd] listen = 'unix:{link}/a.sock': listed twice", twice.Message, StringComparison.Ordinal);
        var control = Assert.Throws<ConfigurationException>(() => Load(facts, new CommandLineSettings { ConfigPath = WriteConfig($"[zramd]\nlisten = unix:{real}/a.sock\ncontrol = {link}/a.sock\n") }));
        Assert.EndsWith("the control socket and an NBD socket are the same file", control.Message, StringComparison.Ordinal);
    }

    /// <summary>The identity check must not refuse what only looks alike: one name in two directories, and two names
    /// in one.</summary>
    [Fact]
    public void Writeback_files_that_are_different_files_load()
    {
        string other = Directory.CreateDirectory(Path.Combine(_dir, "other")).FullName;
        File.WriteAllText(Path.Combine(_dir, "a.wb"), "an old file");
        string path = WriteConfig($"[zram0]\nzram-size = 8M\nwriteback-file = {_dir}/a.wb\n[zram1]\nzram-size = 8M\nwriteback-file = {other}/a.wb\n"
            + $"[zram2]\nzram-size = 8M\nwriteback-file = {other}/b.wb\n");
        ZramdConfiguration config = Load(Facts(env: ("XDG_RUNTIME_DIR", _dir)), new CommandLineSettings { ConfigPath = path });
        Assert.Equal([$"{_dir}/a.wb", $"{other}/a.wb", $"{other}/b.wb"], config.Devices.Select(d => d.WritebackFile));
    }

    [Fact]
    public void Bad_environment_values_are_configuration_errors_and_bad_flags_usage_errors()
    {
        var env = Assert.Throws<ConfigurationException>(() => Load(Facts(env: [("XDG_RUNTIME_DIR", "/r"), ("ZRAMD_MEM_LIMIT", "lots")])));
        Assert.StartsWith("environment variable ZRAMD_MEM_LIMIT = 'lots': ", env.Message, StringComparison.Ordinal);
        Assert.Equal(78, env.ExitCode);

        var flag = Assert.Throws<ConfigurationException>(() => Load(Facts(env: ("XDG_RUNTIME_DIR", "/r")), new CommandLineSettings { Size = "0" }));
        Assert.StartsWith("option --size = '0': ", flag.Message, StringComparison.Ordinal);
        Assert.Equal(64, flag.ExitCode);

        var listen = Assert.Throws<ConfigurationException>(() => Load(Facts(), new CommandLineSettings { Listen = ["tcp:127.0.0.1:1", "nbd:x"] }));
        Assert.StartsWith("option --listen = 'nbd:x': ", listen.Message, StringComparison.Ordinal);

        // tls-certificate and tls-key while tls-mode is off would be taken and never loaded; from the environment too.
        var tls = Assert.Throws<ConfigurationException>(() => Load(Facts(env: [("XDG_RUNTIME_DIR", "/r"), ("ZRAMD_TLS_KEY", "/etc/zramd/key.pem")])));
        Assert.Equal("environment variable ZRAMD_TLS_KEY = '/etc/zramd/key.pem': has no effect while tls-mode is off: set tls-mode = optional or required (ZRAMD_TLS_MODE), or remove it", tls.Message);
        Assert.Equal(78, tls.ExitCode);
        string offInFile = WriteConfig("[zramd]\ntls-mode = off\n");
        tls = Assert.Throws<ConfigurationException>(() => Load(Facts(env: [("XDG_RUNTIME_DIR", "/r"), ("ZRAMD_TLS_CERTIFICATE", "/etc/zramd/cert.pem")]), new CommandLineSettings { ConfigPath = offInFile }));
        Assert.StartsWith("environment variable ZRAMD_TLS_CERTIFICATE = '/etc/zramd/cert.pem': has no effect while tls-mode is off", tls.Message, StringComparison.Ordinal);

        var missing = Assert.Throws<ConfigurationException>(() => Load(Facts(), new CommandLineSettings { ConfigPath = Path.Combine(_dir, "nope.conf") }));
        Assert.Contains("cannot read the configuration file", missing.Message, StringComparison.Ordinal);
        Assert.Equal(78, missing.ExitCode);
    }

    [Fact]
    public void Nbd_limits_default_to_the_servers_and_come_from_the_file_then_the_environment()
    {
        ZramdConfiguration defaults = Load(Facts(env: ("XDG_RUNTIME_DIR", "/run/user/1")));
        Assert.Equal((256, 64, 4, 32 << 20, TimeSpan.FromSeconds(30), 50),
            (defaults.MaxConnections, defaults.MaxInFlightPerConnection, defaults.ThreadsPerConnection, defaults.MaxPayload, defaults.HandshakeTimeout, defaults.BusyPollMicroseconds));

        string path = WriteConfig("[zramd]\nmax-connections = 8\nmax-in-flight = 2\nthreads-per-connection = 2\nmax-payload = 1M\nhandshake-timeout = 5s\nbusy-poll = 0\n");
        ZramdConfiguration file = Load(Facts(env: ("XDG_RUNTIME_DIR", "/run/user/1")), new CommandLineSettings { ConfigPath = path });
        Assert.Equal((8, 2, 2, 1 << 20, TimeSpan.FromSeconds(5), 0),
            (file.MaxConnections, file.MaxInFlightPerConnection, file.ThreadsPerConnection, file.MaxPayload, file.HandshakeTimeout, file.BusyPollMicroseconds));

        ZramdConfiguration env = Load(
            Facts(env: [("XDG_RUNTIME_DIR", "/run/user/1"), ("ZRAMD_MAX_CONNECTIONS", "1"), ("ZRAMD_MAX_IN_FLIGHT", "4096"), ("ZRAMD_THREADS_PER_CONNECTION", "64"), ("ZRAMD_MAX_PAYLOAD", "4096"), ("ZRAMD_HANDSHAKE_TIMEOUT", "3600"), ("ZRAMD_BUSY_POLL", "1000us")]),
            new CommandLineSettings { ConfigPath = path });
        Assert.Equal((1, 4096, 64, 4096, TimeSpan.FromHours(1), 1000),
            (env.MaxConnections, env.MaxInFlightPerConnection, env.ThreadsPerConnection, env.MaxPayload, env.HandshakeTimeout, env.BusyPollMicroseconds));

        // The default threads-per-connection gives way to a lower max-in-flight (one set beside it is refused: BadFileValues).
        Assert.Equal((2, 2), (Load(Facts(env: [("XDG_RUNTIME_DIR", "/r"), ("ZRAMD_MAX_IN_FLIGHT", "2")])) is var low ? (low.MaxInFlightPerConnection, low.ThreadsPerConnection) : default));

        var bad = Assert.Throws<ConfigurationException>(() => Load(Facts(env: [("XDG_RUNTIME_DIR", "/r"), ("ZRAMD_MAX_PAYLOAD", "0")])));
        Assert.Equal("environment variable ZRAMD_MAX_PAYLOAD = '0': the largest READ or WRITE payload must be from 4K to 1G", bad.Message);
        Assert.Equal(78, bad.ExitCode);
    }

    [Fact]
    public void The_socket_group_is_disk_where_it_exists_and_may_be_given_to_else_ours_with_the_reason()
    {
        var groups = new Dictionary<string, uint> { ["root"] = 0, ["disk"] = 6, ["staff"] = 50 };
        SystemFacts withDisk = Facts(env: ("XDG_RUNTIME_DIR", "/run/user/1")) with { FindGroup = name => groups.TryGetValue(name, out uint id) ? id : null };

        ZramdConfiguration root = Load(withDisk with { IsRoot = true, CanChownToAnyGroup = true });
        Assert.Equal("disk", root.SocketGroup);
        Assert.Null(root.SocketGroupFallback);

        ZramdConfiguration member = Load(withDisk with { GroupIds = [1000, 6] });
        Assert.Equal("disk", member.SocketGroup);

        ZramdConfiguration stranger = Load(withDisk with { GroupIds = [1000] });
        Assert.Null(stranger.SocketGroup);
        Assert.Equal("zramd has neither CAP_CHOWN nor membership of group 'disk', so it cannot give the sockets to it", stranger.SocketGroupFallback);

        // Root under a unit whose CapabilityBoundingSet leaves out CAP_CHOWN: chown would fail, so ours.
        ZramdConfiguration boundedRoot = Load(withDisk with { IsRoot = true, GroupIds = [0] });
        Assert.Null(boundedRoot.SocketGroup);
        Assert.NotNull(boundedRoot.SocketGroupFallback);

        groups.Remove("disk");
        ZramdConfiguration noDisk = Load(withDisk with { IsRoot = true, CanChownToAnyGroup = true });
        Assert.Null(noDisk.SocketGroup);
        Assert.Equal("there is no group 'disk'", noDisk.SocketGroupFallback);

        // Set explicitly, the group must exist (a name in the file, or any number); no fallback then.
        string path = WriteConfig("[zramd]\nsocket-group = staff\n");
        ZramdConfiguration staff = Load(withDisk with { IsRoot = true }, new CommandLineSettings { ConfigPath = path });
        Assert.Equal(("staff", (string?)null), (staff.SocketGroup, staff.SocketGroupFallback));
        Assert.Equal("1234", Load(withDisk with { Environment = new Dictionary<string, string> { ["XDG_RUNTIME_DIR"] = "/r", ["ZRAMD_SOCKET_GROUP"] = "1234" } }).SocketGroup);
        var e = Assert.Throws<ConfigurationException>(() => Load(withDisk with { Environment = new Dictionary<string, string> { ["XDG_RUNTIME_DIR"] = "/r", ["ZRAMD_SOCKET_GROUP"] = "disk" } }));
        Assert.Equal("environment variable ZRAMD_SOCKET_GROUP = 'disk': no such group", e.Message);
    }

    /// <summary>A socket-group name is looked up once, by the loader, through NSS (getgrnam_r), and the listener is
    /// handed its id. Found by review: the loader read /etc/group alone, so a group only in NSS (LDAP, sssd) was
    /// refused with "no such group in /etc/group", and the listener then looked the name up again with getgrnam,
    /// which could give another id.</summary>
    [Fact]
    public void A_socket_group_name_is_looked_up_once_through_nss_and_its_id_handed_on()
    {
        SystemFacts facts = Facts(env: ("XDG_RUNTIME_DIR", "/run/user/1"));
        ZramdConfiguration Group(SystemFacts f, string group) => Load(f, new CommandLineSettings { ConfigPath = WriteConfig($"[zramd]\nsocket-group = {group}\n") });

        // The real lookup: a group in /etc/group has the id getent gives (NSS's files module).
        string[] disk = ClientTool.Run("getent", ["group", "disk"]).EnsureSuccess().Stdout.Trim().Split(':');
        ZramdConfiguration byName = Group(facts, "disk");
        Assert.Equal(("disk", (uint?)uint.Parse(disk[2], CultureInfo.InvariantCulture)), (byName.SocketGroup, byName.SocketGroupId));
        Assert.Equal(0u, Group(facts, "0").SocketGroupId);
        Assert.Equal(4294967294u, Group(facts, "4294967294").SocketGroupId);

        // A group NSS knows but /etc/group does not (from LDAP, say): here one the test's lookup knows.
        SystemFacts ldap = facts with { FindGroup = name => name == "zramd-ldap-operators" ? 70000u : null };
        Assert.Equal(70000u, Group(ldap, "zramd-ldap-operators").SocketGroupId);

        // A lookup that fails (a directory server out of reach) is one line naming the key.
        SystemFacts broken = facts with { FindGroup = name => throw new IOException($"looking up group '{name}': Connection refused") };
        var e = Assert.Throws<ConfigurationException>(() => Group(broken, "staff"));
        Assert.EndsWith("[zramd] socket-group = 'staff': looking up group 'staff': Connection refused", e.Message, StringComparison.Ordinal);
        Assert.Equal(78, e.ExitCode);
    }

    [Fact]
    public void Tls_loads_a_certificate_and_key()
    {
        (string certPath, string keyPath) = TestCertificate.Write(_dir);
        string path = WriteConfig($"[zramd]\nlisten = tcp:127.0.0.1:10812\ntls-mode = required\ntls-certificate = {certPath}\ntls-key = {keyPath}\n");

        ZramdConfiguration config = Load(Facts(), new CommandLineSettings { ConfigPath = path, ControlPath = "/tmp/c.ctl" });
        Assert.Equal(NbdTlsMode.Required, config.TlsMode);
        Assert.NotNull(config.TlsCertificate);
        Assert.True(config.TlsCertificate.HasPrivateKey);
        Assert.Equal("CN=zramd-test", config.TlsCertificate.Subject);

        File.WriteAllText(keyPath, "not a key");
        var e = Assert.Throws<ConfigurationException>(() => Load(Facts(), new CommandLineSettings { ConfigPath = path, ControlPath = "/tmp/c.ctl" }));
        Assert.Contains($"[zramd] tls-key = '{keyPath}': cannot load the certificate and key", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Tls_client_ca_loads_the_authorities_under_required_and_is_one_line_anywhere_else()
    {
        (string certPath, string keyPath) = TestCertificate.Write(_dir);
        string caPath = TestCertificate.WriteClientAuthority(Path.Combine(_dir, "clients"));
        string tls = $"[zramd]\nlisten = tcp:127.0.0.1:10812\ntls-certificate = {certPath}\ntls-key = {keyPath}\n";
        CommandLineSettings Settings(string text) => new() { ConfigPath = WriteConfig(text), ControlPath = "/tmp/c.ctl" };

        ZramdConfiguration config = Load(Facts(), Settings($"{tls}tls-mode = required\ntls-client-ca = {caPath}\n"));
        Assert.Equal(caPath, config.TlsClientCaPath);
        Assert.Equal("CN=zramd-test client CA", Assert.Single(config.TlsClientAuthorities!).Subject);

        // From the environment too; without it, no client certificate is asked for.
        ZramdConfiguration env = Load(Facts(env: ("ZRAMD_TLS_CLIENT_CA", caPath)), Settings($"{tls}tls-mode = required\n"));
        Assert.Equal(caPath, env.TlsClientCaPath);
        Assert.Null(Load(Facts(), Settings($"{tls}tls-mode = required\n")).TlsClientAuthorities);

        string clientCert = Path.Combine(_dir, "clients", "client-cert.pem");
        string empty = Path.Combine(_dir, "empty.pem");
        File.WriteAllText(empty, "no certificate here\n");
        foreach ((string text, string error) in new[]
        {
            ($"{tls}tls-mode = optional\ntls-client-ca = {caPath}\n", $"[zramd] tls-client-ca = '{caPath}': client certificates are checked only with tls-mode = required"),
            ($"[zramd]\nlisten = tcp:127.0.0.1:10812\ntls-client-ca = {caPath}\n", $"[zramd] tls-client-ca = '{caPath}': has no effect while tls-mode is off"),
            ($"{tls}tls-mode = required\ntls-client-ca = {_dir}/nope.pem\n", $"[zramd] tls-client-ca = '{_dir}/nope.pem': no such file"),
            ($"{tls}tls-mode = required\ntls-client-ca = {empty}\n", $"[zramd] tls-client-ca = '{empty}': no PEM certificate in the file"),
            ($"{tls}tls-mode = required\ntls-client-ca = {clientCert}\n", $"[zramd] tls-client-ca = '{clientCert}': no root authority (a self-signed CA certificate) in the file"),
        })
        {
            var e = Assert.Throws<ConfigurationException>(() => Load(Facts(), Settings(text)));
            Assert.Contains(error, e.Message, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', e.Message);
            Assert.Equal(78, e.ExitCode);
        }
    }
}
