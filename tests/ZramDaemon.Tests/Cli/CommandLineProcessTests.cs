using ZramDaemon.Tests.Configuration;
using ZramDaemon.Tests.Daemon;

namespace ZramDaemon.Tests.Cli;

/// <summary>The exit codes and messages of the real zramd process.</summary>
public sealed class CommandLineProcessTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private Dictionary<string, string> Env() => new() { ["XDG_RUNTIME_DIR"] = _dir, ["RUNTIME_DIRECTORY"] = _dir };

    [Fact]
    public void Help_lists_every_option_and_verb_and_exits_0()
    {
        (int code, string stdout, _) = ZramdProcess.Run(["--help"], Env());
        Assert.Equal(0, code);
        foreach (string word in new[] { "--listen", "--size", "--algorithm", "--mem-limit", "--config", "--control", "status", "compact", "set", "stats", "classes", "reset" })
        {
            Assert.Contains(word, stdout, StringComparison.Ordinal);
        }

        (int statusCode, string statusHelp, _) = ZramdProcess.Run(["status", "--help"], Env());
        Assert.Equal(0, statusCode);
        Assert.Contains("--json", statusHelp, StringComparison.Ordinal);
        Assert.Contains("--raw", statusHelp, StringComparison.Ordinal);
    }

    /// <summary>attach and detach talk to the NBD socket and the kernel, never to the control socket: their help showed
    /// --control all the same (a recursive option of the root), and they took it and ignored it.</summary>
    [Theory]
    [InlineData("attach", false)]
    [InlineData("detach", false)]
    [InlineData("status", true)]
    [InlineData("compact", true)]
    [InlineData("set", true)]
    [InlineData("recompress", true)]
    [InlineData("writeback", true)]
    [InlineData("stats", true)]
    [InlineData("classes", true)]
    [InlineData("reset", true)]
    [InlineData("idle", true)]
    public void A_verb_s_help_shows_control_only_when_the_verb_uses_the_control_socket(string verb, bool usesControl)
    {
        (int code, string stdout, _) = ZramdProcess.Run([verb, "--help"], Env());
        Assert.Equal(0, code);
        Assert.Equal(usesControl, stdout.Contains("--control", StringComparison.Ordinal));
    }

    public static TheoryData<string[], string> VerbsWithAnOptionOfTheDaemon()
    {
        string[][] verbs =
        [
            ["status"], ["compact"], ["set", "zram0", "mem_limit=1M"], ["recompress", "zram0"], ["writeback", "zram0"],
            ["stats", "zram0"], ["classes", "zram0"], ["reset", "zram0"], ["idle", "zram0"], ["attach", "zram0", "/dev/nbd0"], ["detach", "/dev/nbd0"],
        ];
        string[][] options = [["--listen", "unix:/tmp/zramd-test.sock"], ["--size", "1G"], ["--algorithm", "zstd"], ["--mem-limit", "1G"], ["--config", "/etc/zramd/zramd.conf"]];
        var data = new TheoryData<string[], string>();
        foreach (string[] verb in verbs)
        {
            foreach (string[] option in options)
            {
                data.Add([.. option, .. verb], $"zramd: {option[0]} is an option of the daemon, not of {verb[0]}");
            }
        }

        // attach and detach do not use the control socket (see A_verb_s_help_shows_control_only_when...).
        data.Add(["--control", "/tmp/zramd-test.ctl", "attach", "zram0", "/dev/nbd0"], "zramd: --control is not an option of attach: attach does not use the control socket");
        data.Add(["--control", "/tmp/zramd-test.ctl", "detach", "/dev/nbd0"], "zramd: --control is not an option of detach: detach does not use the control socket");
        return data;
    }

    /// <summary>An option of the root command given before a verb was taken and ignored: <c>zramd --size 1G status</c>
    /// showed the status, <c>zramd --control P attach zram0</c> attached through the default NBD socket, both as if the
    /// option were not there (exit 1 here, with no daemon: "no control socket", "cannot connect", "cannot open").</summary>
    [Theory]
    [MemberData(nameof(VerbsWithAnOptionOfTheDaemon))]
    public void An_option_of_the_daemon_before_a_verb_is_a_usage_error_naming_both(string[] args, string expected)
    {
        (int code, string stdout, string stderr) = ZramdProcess.Run(args, Env());
        Assert.Equal(64, code);
        Assert.Equal(string.Empty, stdout);
        Assert.Equal(expected, stderr.Split('\n')[0]);
    }

    /// <summary>
    /// A device name or kernel device that cannot be one is a usage error naming it, before anything is asked of the
    /// daemon or the kernel: an option a verb does not take used to land in NAME or DEVICE (stats took '--size' for a
    /// name and asked the daemon; attach took '--control' for its DEVICE and connected), and compact " " compacted every
    /// device.
    /// </summary>
    [Theory]
    [InlineData(new[] { "stats", "--size", "1G", "zram0" }, "'--size' is not a device name: devices are zram0, zram1, ...")]
    [InlineData(new[] { "compact", " " }, "' ' is not a device name: devices are zram0, zram1, ...")]
    [InlineData(new[] { "set", "swap0", "mem_limit=1M" }, "'swap0' is not a device name: devices are zram0, zram1, ...")]
    [InlineData(new[] { "attach", "zram0", "--control" }, "'--control' is not an nbd device: use /dev/nbdN")]
    [InlineData(new[] { "detach", "/dev/sda" }, "'/dev/sda' is not an nbd device: use /dev/nbdN")]
    public void A_name_or_device_that_cannot_be_one_is_a_usage_error_naming_it(string[] args, string expected)
    {
        (int code, string stdout, string stderr) = ZramdProcess.Run(args, Env());
        Assert.Equal(64, code);
        Assert.Equal(string.Empty, stdout);
        Assert.Contains("zramd: " + expected, stderr, StringComparison.Ordinal);
    }

    /// <summary>Refused, not merely reported: the daemon's limit is the one it started with.</summary>
    [Fact]
    public void A_set_after_an_option_of_the_daemon_changes_nothing()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "32M", "--mem-limit", "16M"]);
        (int code, _, string stderr) = ZramdProcess.Run(["--mem-limit", "8M", "set", "zram0", "mem_limit=4M", "--control", daemon.ControlPath], Env());
        Assert.Equal(64, code);
        Assert.StartsWith("zramd: --mem-limit is an option of the daemon, not of set", stderr, StringComparison.Ordinal);
        Assert.Equal(16L << 20, daemon.Status().GetProperty("mem_limit").GetInt64());
    }

    /// <summary>--control before a verb that uses the control socket means what it means after the verb.</summary>
    [Fact]
    public void Control_before_a_verb_is_the_verb_s_control_socket()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "32M"]);
        (int code, string stdout, string stderr) = ZramdProcess.Run(["--control", daemon.ControlPath, "set", "zram0", "mem_limit=4M"], Env());
        Assert.True(code == 0, stderr);
        Assert.Equal("zram0: mem_limit = 4M (4194304 bytes)\n", stdout);
        Assert.Equal(4L << 20, daemon.Status().GetProperty("mem_limit").GetInt64());

        (int twice, _, string twiceError) = ZramdProcess.Run(["--control", daemon.ControlPath, "status", "--control", daemon.ControlPath], Env());
        Assert.Equal(64, twice);
        Assert.StartsWith("zramd: ", twiceError, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--no-such-flag")]
    [InlineData("--size")]
    [InlineData("stats")]
    [InlineData("set", "zram0")]
    [InlineData("set", "zram0", "mem_limit")]
    [InlineData("set", "zram0", "disksize=1G")]
    [InlineData("set", "zram0", "mem_limit=lots")]
    [InlineData("set", "zram0", "mem_used_max=1")]
    [InlineData("set", "zram0", "writeback_limit=-1")]
    [InlineData("status", "extra")]
    [InlineData("--size", "1.5G")]
    [InlineData("--listen", "udp:1")]
    public void Usage_errors_exit_64(params string[] args)
    {
        (int code, string stdout, string stderr) = ZramdProcess.Run(args, Env());
        Assert.Equal(64, code);
        Assert.StartsWith("zramd: ", stderr, StringComparison.Ordinal);
        Assert.Equal(string.Empty, stdout);
    }

    public static TheoryData<string, string> BadConfigFiles => new()
    {
        { "[zram0]\nzram-size = ram / 0\n", "[zram0] zram-size = 'ram / 0': division by zero" },
        { "[zram0]\ncompression-algorithm = lzo-rle\n", "[zram0] compression-algorithm = 'lzo-rle': 'lzo-rle' is not a compression algorithm" },
        { "[zram0]\nzram-resident-limit = ram / x\n", "[zram0] zram-resident-limit = 'ram / x': unknown name 'x'" },
        { "[zramd]\nsocket-mode = rw\n", "[zramd] socket-mode = 'rw': not a permission mode" },
        { "[zram1]\nread-only = sometimes\n", "[zram1] read-only = 'sometimes': use yes or no" },
        { "[zramd]\ntls-certificate = /etc/zramd/cert.pem\n", "[zramd] tls-certificate = '/etc/zramd/cert.pem': has no effect while tls-mode is off" },
    };

    [Theory]
    [MemberData(nameof(BadConfigFiles))]
    public void A_bad_config_value_is_one_line_and_exit_78_with_nothing_started(string text, string expected)
    {
        string config = Path.Combine(_dir, "zramd.conf");
        File.WriteAllText(config, text);
        string socket = Path.Combine(_dir, "nbd.sock");
        (int code, string stdout, string stderr) = ZramdProcess.Run(["--config", config, "--listen", "unix:" + socket], Env());
        Assert.Equal(78, code);
        Assert.Equal($"zramd: {config}:2 {expected}", stderr.TrimEnd('\n').Split('\n').Single()[..($"zramd: {config}:2 {expected}".Length)]);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.Equal(string.Empty, stdout);
        Assert.False(File.Exists(socket), "nothing may be listening after a configuration error");
        Assert.False(File.Exists(Path.Combine(_dir, "zramd.ctl")));
    }

    /// <summary>Two devices writing back to one file: the second device's open of it failed at start, after the first
    /// device was made ("zramd could not start: The process cannot access the file ...", exit 1), naming neither
    /// the key nor the devices.</summary>
    [Fact]
    public void Two_devices_with_one_writeback_file_are_one_configuration_error_naming_both()
    {
        string config = Path.Combine(_dir, "zramd.conf");
        string shared = Path.Combine(_dir, "shared.wb");
        File.WriteAllText(config, $"[zram0]\nzram-size = 16M\nwriteback-file = {shared}\n[zram1]\nzram-size = 16M\nwriteback-file = {shared}\n");
        string socket = Path.Combine(_dir, "nbd.sock");
        (int code, string stdout, string stderr) = ZramdProcess.Run(["--config", config, "--listen", "unix:" + socket], Env());
        Assert.Equal(78, code);
        string line = Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.StartsWith($"zramd: {config}:6 [zram1] writeback-file = '{shared}': [zram0] writeback-file is the same file", line, StringComparison.Ordinal);
        Assert.Equal(string.Empty, stdout);
        Assert.False(File.Exists(socket), "nothing may be listening after a configuration error");
        Assert.False(File.Exists(shared), "no device may have been made");
    }

    /// <summary>The same, with the second path reaching the file another way: it passed the configuration check, and the
    /// start failed after zram0 was made ("zramd could not start: The process cannot access the file ... because it is
    /// being used by another process", exit 1); with a hard link, zram0 had replaced the file that was there.</summary>
    [Theory]
    [InlineData(WritebackFileAlias.SymlinkedDirectory)]
    [InlineData(WritebackFileAlias.HardLink)]
    [InlineData(WritebackFileAlias.DotDotAfterASymlink)]
    public void Two_devices_reaching_one_writeback_file_by_other_paths_are_one_configuration_error_and_nothing_is_touched(string how)
    {
        (string first, string second) = WritebackFileAlias.Make(how, _dir);
        string config = Path.Combine(_dir, "zramd.conf");
        File.WriteAllText(config, $"[zram0]\nzram-size = 16M\nwriteback-file = {first}\n[zram1]\nzram-size = 16M\nwriteback-file = {second}\n");
        string socket = Path.Combine(_dir, "nbd.sock");
        (int code, string stdout, string stderr) = ZramdProcess.Run(["--config", config, "--listen", "unix:" + socket], Env());
        Assert.True(code == 78, stderr);
        string line = Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.Equal($"zramd: {config}:6 [zram1] writeback-file = '{second}': [zram0] writeback-file is the same file: each device needs its own", line);
        Assert.Equal(string.Empty, stdout);
        Assert.False(File.Exists(socket), "nothing may be listening after a configuration error");
        if (how == WritebackFileAlias.HardLink)
        {
            Assert.Equal("kept", File.ReadAllText(first));
        }
        else
        {
            Assert.False(File.Exists(first), "no device may have been made");
        }
    }

    /// <summary>A writeback-file named through a symlink's <c>..</c> is the file the kernel opens for that path: the
    /// parent of the link's target holds it. Found by review: Path.GetFullPath took <c>link/..</c> away as text, and
    /// zramd made and wrote other/zram0.wb, a file the path does not reach.</summary>
    [Fact]
    public void A_writeback_file_named_through_a_symlinks_dot_dot_is_the_file_the_kernel_opens()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(dir =>
        {
            string target = Directory.CreateDirectory(Path.Combine(dir, "real", "sub")).FullName;
            Directory.CreateSymbolicLink(Path.Combine(Directory.CreateDirectory(Path.Combine(dir, "other")).FullName, "link"), target);
            return $"[zram0]\nzram-size = 16M\nwriteback-file = {dir}/other/link/../zram0.wb\n";
        });
        string written = $"{daemon.Directory}/other/link/../zram0.wb";
        Assert.Equal((16L << 20) + (ZramDaemon.Device.Writeback.WritebackBatch.Capacity * 4096L) + ZramDaemon.Device.Writeback.BackingFile.Trailer.Length, new FileInfo(Path.Combine(daemon.Directory, "real", "zram0.wb")).Length);
        Assert.False(File.Exists(Path.Combine(daemon.Directory, "other", "zram0.wb")), "zramd made the file the path names as text");
        string Identity(string path) => ClientTool.Run("stat", ["-L", "-c", "%d:%i", path]).EnsureSuccess().Stdout.Trim();
        Assert.Equal(Identity(Path.Combine(daemon.Directory, "real", "zram0.wb")), Identity(written));
    }

    /// <summary>A writeback-file a running zramd holds, named by a second zramd: the second's start failed with
    /// "zramd could not start: The process cannot access the file ... because it is being used by another process"
    /// (exit 1), naming no key. With the runtime's file locking off (DOTNET_SYSTEM_IO_DISABLEFILELOCKING=1) the
    /// FileStream took no lock and opened with O_TRUNC: the second daemon started, and the first's written-back pages
    /// were gone (this test's run timed out waiting for the second to fail).</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_writeback_file_another_zramd_holds_is_one_configuration_error_and_its_pages_stay(bool runtimeFileLockingOff)
    {
        string backing = Path.Combine(_dir, "zram0.wb");
        string config = Path.Combine(_dir, "zramd.conf");
        File.WriteAllText(config, $"[zram0]\nzram-size = 16M\nwriteback-file = {backing}\n");
        using RunningDaemon first = RunningDaemon.Start(["--config", config], directory: Directory.CreateDirectory(Path.Combine(_dir, "first")).FullName);
        byte[] data = new byte[256 * 4096];
        new Random(7).NextBytes(data);
        string source = Path.Combine(_dir, "source.bin");
        File.WriteAllBytes(source, data);
        ClientTool.Run("nbdcopy", [source, first.Uri()]).EnsureSuccess();
        string wrote;
        do
        {
            (int writebackCode, wrote, string writebackError) = first.Cli("writeback", "zram0", "type=all");
            Assert.True(writebackCode == 0, writebackError);
        }
        while (wrote.Contains("(stopped after the time limit", StringComparison.Ordinal));

        Assert.Equal(256, first.Status().GetProperty("bd_count").GetInt64());

        string second = Directory.CreateDirectory(Path.Combine(_dir, "second")).FullName;
        Dictionary<string, string> env = new() { ["XDG_RUNTIME_DIR"] = second };
        if (runtimeFileLockingOff)
        {
            env["DOTNET_SYSTEM_IO_DISABLEFILELOCKING"] = "1";
        }

        (int code, string stdout, string stderr) = ZramdProcess.Run(["--config", config, "--listen", "unix:" + Path.Combine(second, "nbd.sock")], env, timeoutSeconds: 30);
        Assert.True(code == 78, stderr);
        Assert.Equal($"zramd: {config}:3 [zram0] writeback-file = '{backing}': in use by another process (another zramd?), which holds its lock: each device needs a file of its own",
            stderr.TrimEnd('\n').Split('\n')[^1]);
        Assert.DoesNotContain("could not start", stderr, StringComparison.Ordinal);
        Assert.Equal(string.Empty, stdout);
        Assert.Empty(Directory.GetFileSystemEntries(second));

        Assert.Equal(256, first.Status().GetProperty("bd_count").GetInt64());
        string copy = Path.Combine(_dir, "copy.bin");
        ClientTool.Run("nbdcopy", [first.Uri(), copy]).EnsureSuccess();
        Assert.True(File.ReadAllBytes(copy).AsSpan(0, data.Length).SequenceEqual(data), "the first daemon's written-back pages read back different");
    }

    /// <summary>writeback-file naming an existing directory is refused by the loader: one line naming the key, exit 78,
    /// before anything is logged or memory locked, and the directory stays. Found by review: the loader took it (its
    /// parent exists) and the device's open failed at start (then an UnauthorizedAccessException from FileStream,
    /// "Unhandled exception", exit 134; later "zramd could not start: cannot open ...: Is a directory", exit 1, naming
    /// no key).</summary>
    [Fact]
    public void A_writeback_file_that_is_a_directory_is_one_line_naming_the_key_not_an_unhandled_exception()
    {
        string config = Path.Combine(_dir, "zramd.conf");
        string folder = Directory.CreateDirectory(Path.Combine(_dir, "wb")).FullName;
        File.WriteAllText(config, $"[zram0]\nzram-size = 16M\nwriteback-file = {folder}\n");
        (int code, string stdout, string stderr) = ZramdProcess.Run(["--config", config, "--listen", "unix:" + Path.Combine(_dir, "nbd.sock")], Env());
        Assert.DoesNotContain("Unhandled exception", stderr, StringComparison.Ordinal);
        Assert.True(code == 78, $"exit {code}:\n{stderr}");
        Assert.StartsWith($"zramd: {config}:3 [zram0] writeback-file = '{folder}': that is a directory", Assert.Single(stderr.TrimEnd('\n').Split('\n')), StringComparison.Ordinal);
        Assert.Equal(string.Empty, stdout);
        Assert.True(Directory.Exists(folder));
    }

    /// <summary>A configuration file or PEM file that never ends (/dev/zero; a FIFO a program keeps writing) is one line
    /// naming it and the 1 MiB zramd reads at most, exit 78. Found by review: both were read whole with
    /// File.ReadAllText, so zramd read /dev/zero until it ran out of memory: "Out of memory.", exit 134, after some
    /// 6 s and gigabytes.</summary>
    [Theory]
    [InlineData("--config")]
    [InlineData("tls-certificate")]
    [InlineData("tls-key")]
    public void An_endless_configuration_or_pem_file_is_one_line_naming_it_and_the_cap_exit_78(string which)
    {
        string socket = Path.Combine(_dir, "nbd.sock");
        string config = Path.Combine(_dir, "zramd.conf");
        (string certPath, string keyPath) = TestCertificate.Write(_dir);
        File.WriteAllText(config, $"[zramd]\ntls-mode = required\ntls-certificate = {(which == "tls-certificate" ? "/dev/zero" : certPath)}\ntls-key = {(which == "tls-key" ? "/dev/zero" : keyPath)}\n");
        (int code, string stdout, string stderr) = ZramdProcess.Run(
            ["--config", which == "--config" ? "/dev/zero" : config, "--listen", "unix:" + socket], Env(), timeoutSeconds: 60);
        Assert.True(code == 78, $"exit {code}:\n{stderr}");
        string expected = which == "--config"
            ? "zramd: /dev/zero: the configuration file holds more than 1 MiB, the most zramd reads"
            : $"zramd: {config}:{(which == "tls-key" ? 4 : 3)} [zramd] {which} = '/dev/zero': the file holds more than 1 MiB, the most zramd reads of a PEM certificate or key";
        Assert.Equal(expected, Assert.Single(stderr.TrimEnd('\n').Split('\n')));
        Assert.Equal(string.Empty, stdout);
        Assert.False(File.Exists(socket));
    }

    /// <summary>A writeback-file the device cannot create (here in /proc, where even root gets ENOENT; likewise /sys,
    /// or a directory zramd may not write) is a configuration error only the start can see: one line naming the key
    /// with the OS's reason, exit 78, as for a file another zramd holds. Found by review: "zramd could not start:
    /// cannot open /proc/x.wb: No such file or directory", exit 1, naming no key (with FileStream before, an
    /// unhandled UnauthorizedAccessException, exit 134).</summary>
    [Fact]
    public void A_writeback_file_that_cannot_be_created_is_one_line_naming_the_key_with_the_reason()
    {
        string config = Path.Combine(_dir, "zramd.conf");
        File.WriteAllText(config, "[zram0]\nzram-size = 16M\nwriteback-file = /proc/x.wb\n");
        (int code, string stdout, string stderr) = ZramdProcess.Run(["--config", config, "--listen", "unix:" + Path.Combine(_dir, "nbd.sock")], Env());
        Assert.DoesNotContain("Unhandled exception", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("could not start", stderr, StringComparison.Ordinal);
        Assert.True(code == 78, $"exit {code}:\n{stderr}");
        Assert.Equal($"zramd: {config}:3 [zram0] writeback-file = '/proc/x.wb': cannot open /proc/x.wb: No such file or directory", stderr.TrimEnd('\n').Split('\n')[^1]);
        Assert.Equal(string.Empty, stdout);
    }

    /// <summary>A zram-size nested past RamExpression.MaxNesting levels (parentheses, or a run of unary minus signs)
    /// is one line naming the key, exit 78. Found by review: the recursive-descent parser had no depth limit, and some
    /// 20,000 levels overflowed the main thread's stack, which .NET cannot catch: "Stack overflow." and a
    /// 20,000-frame trace, exit 134.</summary>
    [Theory]
    [InlineData("parentheses")]
    [InlineData("minus")]
    public void A_deeply_nested_size_expression_is_one_line_naming_the_key_not_a_stack_overflow(string kind)
    {
        string expression = kind == "parentheses"
            ? new string('(', 100_000) + "1" + new string(')', 100_000)
            : new string('-', 1_000_000) + "1";
        string config = Path.Combine(_dir, "zramd.conf");
        File.WriteAllText(config, $"[zram0]\nzram-size = {expression}\n");
        (int code, string stdout, string stderr) = ZramdProcess.Run(["--config", config, "--listen", "unix:" + Path.Combine(_dir, "nbd.sock")], Env());
        Assert.DoesNotContain("Stack overflow", stderr, StringComparison.Ordinal);
        Assert.Equal(78, code);
        Assert.StartsWith($"zramd: {config}:2 [zram0] zram-size = ", Assert.Single(stderr.TrimEnd('\n').Split('\n')), StringComparison.Ordinal);
        Assert.Equal(string.Empty, stdout);
    }

    /// <summary>A device whose slot table does not fit in the memory the process may have (here a 512 MiB heap
    /// limit against 1T's 2 GiB table; a cgroup's memory.max does the same) fails to start in one line naming the key.
    /// Found by review: the OutOfMemoryException passed every catch, and the runtime printed "Unhandled exception"
    /// with a stack trace and aborted (exit 134).</summary>
    [Fact]
    public void A_size_whose_slot_table_does_not_fit_in_memory_is_refused_in_one_line_naming_the_key()
    {
        Dictionary<string, string> env = Env();
        env["DOTNET_GCHeapHardLimit"] = "0x20000000";
        (int code, string stdout, string stderr) = ZramdProcess.Run(
            ["--size", "1T", "--listen", "unix:" + Path.Combine(_dir, "nbd.sock"), "--control", Path.Combine(_dir, "zramd.ctl")], env);
        Assert.DoesNotContain("Unhandled exception", stderr, StringComparison.Ordinal);
        Assert.True(code == 64, $"exit {code}:\n{stderr}");
        // After the start's log of what it runs with, one line says why it stopped.
        string[] lines = stderr.TrimEnd('\n').Split('\n');
        Assert.Equal(
            "zramd: option --size = '1T': not enough memory for the device's slot table (2048 MiB, 8 bytes a page): give a smaller size, or more memory to zramd",
            lines[^1]);
        Assert.Single(lines, l => l.StartsWith("zramd:", StringComparison.Ordinal) || l.Contains(" at ", StringComparison.Ordinal));
        Assert.Equal(string.Empty, stdout);
        Assert.False(File.Exists(Path.Combine(_dir, "nbd.sock")), "the failed start left its socket behind");
    }

    /// <summary>A numeric socket-group above int's range (gid_t is unsigned) is applied: the loader takes gids up to
    /// 4294967294 and hands the number to NbdListener (4294967295 is (gid_t)-1, which chown takes as "leave
    /// the group", and the loader refuses it: see the BadFileValues row). Found by review: the loader took any uint,
    /// but the listener's own lookup (since removed) parsed an int and else looked the number up as a name, so from 2147483648 on the start failed
    /// after the devices were made with "cannot listen on unix:...: unknown group '3000000000'", exit 1, naming no
    /// key.</summary>
    [Fact]
    public void A_large_numeric_socket_group_either_works_or_is_a_configuration_error_naming_the_key()
    {
        string config = Path.Combine(_dir, "zramd.conf");
        File.WriteAllText(config, "[zramd]\nsocket-group = 3000000000\n[zram0]\nzram-size = 16M\n");
        string socket = Path.Combine(_dir, "nbd.sock");
        using ZramdProcess process = ZramdProcess.Start(["--config", config, "--listen", "unix:" + socket, "--control", Path.Combine(_dir, "zramd.ctl")], Env());
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!process.HasExited && !process.StandardError.Contains("attach with:", StringComparison.Ordinal) && clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            Thread.Sleep(20);
        }

        if (process.HasExited)
        {
            int code = process.WaitForExit(TimeSpan.FromSeconds(5));
            Assert.True(code == 78, $"exit {code}:\n{process.StandardError}");
            Assert.Contains("[zramd] socket-group = '3000000000'", process.StandardError, StringComparison.Ordinal);
        }
        else
        {
            Assert.Contains("attach with:", process.StandardError, StringComparison.Ordinal);
            process.Terminate();
            Assert.Equal(0, process.WaitForExit(TimeSpan.FromSeconds(60)));
        }
    }

    /// <summary>Under systemd's ProcSubset=pid (common hardening; zramd.service only warns against it in a comment)
    /// /proc/meminfo does not exist: RAM is then unknown, the daemon runs with --size (no expression needs ram), a verb
    /// runs (it needs no RAM size at all), and only a size that needs ram (here the default) fails, in one line saying
    /// why. Found by review: SystemFacts.Current read /proc/meminfo outside any catch, and both the daemon and the verb
    /// died with "Unhandled exception. System.IO.FileNotFoundException: Could not find file '/proc/meminfo'", exit 134.
    /// Run in a mount namespace with a procfs mounted subset=pid (as root, as the suite runs).</summary>
    [Fact]
    public void Without_proc_meminfo_zramd_says_so_in_one_line_instead_of_an_unhandled_exception()
    {
        string socket = Path.Combine(_dir, "nbd.sock");
        string control = Path.Combine(_dir, "zramd.ctl");
        string script = "mount -t proc -o subset=pid proc /proc || exit 99; "
            + $"timeout -s TERM 15 dotnet '{ZramdProcess.DllPath}' --size 16M --listen 'unix:{socket}' --control '{control}'; echo daemon-exit=$?; "
            + $"ZRAMD_CONTROL='{control}' dotnet '{ZramdProcess.DllPath}' status; echo status-exit=$?; "
            + $"dotnet '{ZramdProcess.DllPath}' --listen 'unix:{socket}' --control '{control}'; echo default-exit=$?";
        ClientTool.Result result = ClientTool.Run("unshare", ["--mount", "--propagation", "private", "sh", "-c", script]);
        Assert.True(result.ExitCode != 99, "cannot mount a procfs with subset=pid here: " + result.Stderr);
        string both = result.Stdout + result.Stderr;
        Assert.DoesNotContain("Unhandled exception", both, StringComparison.Ordinal);
        Assert.DoesNotContain("daemon-exit=134", both, StringComparison.Ordinal);
        Assert.DoesNotContain("status-exit=134", both, StringComparison.Ordinal);
        Assert.Contains("daemon-exit=124", result.Stdout, StringComparison.Ordinal); // it ran until timeout's SIGTERM
        Assert.Contains("default-exit=78", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("zramd: the default zram-size = 'min(ram / 2, 4096)': ram is unknown: /proc/meminfo cannot be read", result.Stderr, StringComparison.Ordinal);
    }

    /// <summary>A socket-group that only NSS knows (not in /etc/group, as an LDAP or sssd group is) is found and given
    /// to the socket. Found by review: the loader read /etc/group alone, and refused it ("socket-group =
    /// 'zramd-nss-only': no such group in /etc/group", exit 78). The group is a systemd userdb drop-in that
    /// nss-systemd serves (nsswitch.conf: "group: files systemd"), under a tmpfs on /run in a mount namespace of
    /// its own (as root, as the suite runs), so the machine's databases stay as they are.</summary>
    [Fact]
    public void A_socket_group_only_nss_knows_is_given_to_the_socket()
    {
        string socket = Path.Combine(_dir, "nbd.sock");
        string log = Path.Combine(_dir, "zramd.log");
        string script = "mount -t tmpfs zramd-nss /run && mkdir /run/userdb || exit 99; "
            + "printf '{\"groupName\":\"zramd-nss-only\",\"gid\":61234}\\n' > /run/userdb/zramd-nss-only.group; "
            + "getent group zramd-nss-only || exit 98; grep -q '^zramd-nss-only:' /etc/group && exit 97; "
            + $"ZRAMD_SOCKET_GROUP=zramd-nss-only dotnet '{ZramdProcess.DllPath}' --size 16M --listen 'unix:{socket}' --control '{Path.Combine(_dir, "zramd.ctl")}' 2>'{log}' & "
            + $"for i in $(seq 300); do grep -q 'attach with:' '{log}' && break; kill -0 $! 2>/dev/null || break; sleep 0.1; done; "
            + $"stat -c 'socket-gid=%g' '{socket}'; kill -TERM $!; wait $!; echo daemon-exit=$?; cat '{log}' >&2";
        ClientTool.Result result = ClientTool.Run("unshare", ["--mount", "--propagation", "private", "sh", "-c", script]);
        Assert.True(result.ExitCode is not (99 or 98 or 97), $"cannot make a group only NSS knows here (exit {result.ExitCode}): {result.Stderr}");
        Assert.Contains("zramd-nss-only:x:61234:", result.Stdout, StringComparison.Ordinal);
        Assert.True(result.Stdout.Contains("socket-gid=61234", StringComparison.Ordinal), result.Stdout + result.Stderr);
        Assert.Contains("daemon-exit=0", result.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void A_bad_environment_value_is_exit_78()
    {
        Dictionary<string, string> env = Env();
        env["ZRAMD_ALGORITHM"] = "brotli";
        (int code, _, string stderr) = ZramdProcess.Run([], env);
        Assert.Equal(78, code);
        Assert.StartsWith("zramd: environment variable ZRAMD_ALGORITHM = 'brotli': 'brotli' is not a compression algorithm", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void A_verb_without_a_daemon_says_so_and_exits_1()
    {
        string control = Path.Combine(_dir, "none.ctl");
        (int code, string stdout, string stderr) = ZramdProcess.Run(["status", "--control", control], Env());
        Assert.Equal(1, code);
        Assert.Equal(string.Empty, stdout);
        Assert.Contains($"no control socket at {control}", stderr, StringComparison.Ordinal);
        Assert.Contains("is zramd running?", stderr, StringComparison.Ordinal);
    }
}
