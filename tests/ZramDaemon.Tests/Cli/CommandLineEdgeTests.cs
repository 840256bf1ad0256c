using ZramDaemon.Tests.Daemon;

namespace ZramDaemon.Tests.Cli;

/// <summary>Inputs for which the real zramd process dies of an unhandled exception (exit 134, "Unhandled exception."
/// and a stack trace) instead of one "zramd: ..." line and exit 64, 78 or 1.</summary>
public sealed class CommandLineEdgeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-cli-edge-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private Dictionary<string, string> Env() => new() { ["XDG_RUNTIME_DIR"] = _dir, ["RUNTIME_DIRECTORY"] = _dir };

    private static void AssertOneLineError((int Code, string Stdout, string Stderr) run, params int[] codes)
    {
        Assert.DoesNotContain("Unhandled exception", run.Stderr, StringComparison.Ordinal);
        Assert.Contains(run.Code, codes);
        Assert.StartsWith("zramd: ", run.Stderr, StringComparison.Ordinal);
        Assert.Single(run.Stderr.TrimEnd('\n').Split('\n'));
        Assert.Equal(string.Empty, run.Stdout);
    }

    /// <summary>ZramdCommandLine.ControlPathFor: Path.GetFullPath("") throws ArgumentException; ControlClient: a path
    /// longer than sun_path throws ArgumentOutOfRangeException from UnixDomainSocketEndPoint. Send catches neither.</summary>
    [Fact]
    public void A_verb_with_an_empty_or_too_long_control_path_is_one_error_line()
    {
        AssertOneLineError(ZramdProcess.Run(["status", "--control", ""], Env()), 64, 1);
        AssertOneLineError(ZramdProcess.Run(["stats", "zram0", "--control", Path.Combine(_dir, new string('c', 120) + ".ctl")], Env()), 64, 1);
    }

    /// <summary>A verb's argument holding an escape sequence is echoed escaped in its error, not raw to the terminal.</summary>
    [Fact]
    public void Control_characters_in_a_verbs_argument_are_shown_escaped()
    {
        (int Code, string Stdout, string Stderr) run = ZramdProcess.Run(["set", "zram0", "fo\x1b[2Jo=1", "--control", Path.Combine(_dir, "none.ctl")], Env());
        AssertOneLineError(run, 64);
        Assert.Contains("'fo\\x1b[2Jo' cannot be set", run.Stderr, StringComparison.Ordinal);
        Assert.False(run.Stderr.AsSpan().ContainsAnyInRange('\0', '\x09'), "a control character reached the terminal");
    }

    /// <summary>AddAttachVerbs: --socket "" becomes "unix:" + Path.GetFullPath(""), which throws ArgumentException
    /// before the try in AttachCommand.Attach.</summary>
    [Fact]
    public void Attach_with_an_empty_socket_is_one_error_line()
    {
        AssertOneLineError(ZramdProcess.Run(["attach", "zram0", "/dev/nbd0", "--socket", ""], Env()), 64, 1);
    }

    /// <summary>A user without XDG_RUNTIME_DIR (a cron job, sudo -u) running a verb: ZramdCommandLine.Send calls
    /// ControlPathFor outside its try, and RequireDefaultDirectory's ConfigurationException is unhandled (exit 134)
    /// although its message is the right one. Run as nobody when the tests run as root.</summary>
    [Fact]
    public void A_verb_without_a_runtime_directory_is_one_error_line_not_an_unhandled_exception()
    {
        string[] command = ["env", "-u", "XDG_RUNTIME_DIR", "-u", "RUNTIME_DIRECTORY", "-u", "ZRAMD_CONTROL", "HOME=/tmp", "dotnet", ZramdProcess.DllPath, "status"];
        ClientTool.Result result = Environment.UserName == "root"
            ? ClientTool.Run("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", .. command])
            : ClientTool.Run(command[0], command[1..]);
        AssertOneLineError((result.ExitCode, result.Stdout, result.Stderr), 64, 78, 1);
        Assert.Contains("no directory for the sockets", result.Stderr, StringComparison.Ordinal);
    }

    /// <summary>The daemon itself: --control "" and a config key left empty reach Path.GetFullPath("") in
    /// ConfigurationLoader.Build/BuildDevice, outside any catch.</summary>
    [Fact]
    public void The_daemon_with_an_empty_control_or_writeback_file_is_one_error_line_and_nothing_starts()
    {
        string socket = Path.Combine(_dir, "nbd.sock");
        AssertOneLineError(ZramdProcess.Run(["--listen", "unix:" + socket, "--control", ""], Env()), 64);
        Assert.False(File.Exists(socket));

        string config = Path.Combine(_dir, "zramd.conf");
        File.WriteAllText(config, "[zram0]\nwriteback-file =\n");
        var run = ZramdProcess.Run(["--config", config, "--listen", "unix:" + socket], Env());
        AssertOneLineError(run, 78);
        Assert.Contains($"{config}:2 [zram0] writeback-file", run.Stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(socket));
    }

    /// <summary>ZramdService.Start creates the control socket's directory outside Bind's try; the
    /// UnauthorizedAccessException (a non-root zramd, a directory it may not create) is not among the exceptions
    /// DaemonRunner.Run turns into "zramd could not start" (exit 1), so the process aborts (exit 134).</summary>
    [Fact]
    public void A_control_directory_the_daemon_may_not_create_fails_the_start_with_exit_1_not_an_abort()
    {
        File.SetUnixFileMode(_dir, (UnixFileMode)0x1FF); // nobody binds its NBD socket here
        string socket = Path.Combine(_dir, "nbd.sock");
        string[] command = ["env", "-u", "XDG_RUNTIME_DIR", "-u", "RUNTIME_DIRECTORY", "HOME=/tmp", "timeout", "60", "dotnet", ZramdProcess.DllPath,
            "--size", "16M", "--listen", "unix:" + socket, "--control", "/root/zramd-no-such-dir/zramd.ctl"];
        ClientTool.Result result = Environment.UserName == "root"
            ? ClientTool.Run("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", .. command])
            : ClientTool.Run(command[0], command[1..]);
        Assert.DoesNotContain("Unhandled exception", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("zramd could not start", result.Stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(socket));
    }
}
