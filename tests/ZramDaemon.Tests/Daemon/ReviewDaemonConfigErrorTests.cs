using System.Diagnostics;

namespace ZramDaemon.Tests.Daemon;

/// <summary>Review: the one line a bad configuration file gets, from the real daemon.</summary>
public sealed class ReviewDaemonConfigErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-review-conf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (int Code, string Stderr) RunWith(string config)
    {
        string file = Path.Combine(_dir, "zramd.conf");
        File.WriteAllText(file, config);
        (int code, _, string stderr) = ZramdProcess.Run(
            ["--config", file, "--listen", "unix:" + Path.Combine(_dir, "zramd.sock")],
            new Dictionary<string, string> { ["XDG_RUNTIME_DIR"] = _dir });
        return (code, stderr);
    }

    /// <summary>
    /// README: "78 configuration error (one line naming the file, line, section, key, value and why; nothing is
    /// started)". An unknown section (a typo such as [zarm1], or zram-generator's [swap]) is named without its line:
    /// IniFile.Parse (src/ZramDaemon/Configuration/IniFile.cs) keeps the sections' names but not the lines of their
    /// headers, so ConfigurationLoader.ReadFile guesses "(line N or before)" from the section's first key, N being that
    /// key's line less one: with a comment or a blank line between the header and the key it points at the wrong line
    /// (here "line 5 or before" for a header on line 4), and a section with no key gets no line at all. Expected: the
    /// header's own line, as every other error names the line it is about.
    /// </summary>
    [Theory]
    [InlineData("[zram0]\nzram-size = 16M\n\n[zarm1]\n# the scratch disk\nzram-size = 16M\n")]
    [InlineData("[zram0]\nzram-size = 16M\n\n[zarm1]\n")]
    public void An_unknown_section_is_named_with_the_line_of_its_header(string config)
    {
        (int code, string stderr) = RunWith(config);
        Assert.Equal(78, code);
        string line = stderr.Trim();
        Assert.Single(line.Split('\n'));
        Assert.Contains("[zarm1]", line, StringComparison.Ordinal);
        Assert.Contains("unknown section", line, StringComparison.Ordinal);
        Assert.True(line.Contains("zramd.conf:4", StringComparison.Ordinal) || line.Contains("line 4)", StringComparison.Ordinal),
            "the header is on line 4: " + line);
    }

    /// <summary>A value holding control characters (an escape sequence, a carriage return) is shown escaped: its error
    /// stays one line and cannot recolour or rewrite the terminal that shows it (the raw bytes were echoed).</summary>
    [Fact]
    public void Control_characters_in_a_bad_value_are_shown_escaped()
    {
        (int code, string stderr) = RunWith("[zram0]\nzram-size = 16M\x1b[2J\rok\u0085k\n");
        Assert.Equal(78, code);
        string line = stderr.TrimEnd('\n');
        Assert.Single(line.Split('\n'));
        Assert.Contains("zram-size = '16M\\x1b[2J\\x0dok\\x85k'", line, StringComparison.Ordinal);
        Assert.False(line.AsSpan().ContainsAnyInRange('\0', '\x1f'), "a control character reached the terminal: " + line);
    }

    /// <summary>
    /// A writeback-file that is also the NBD socket's path (or the control socket's). ConfigurationLoader.Build refuses
    /// the control socket and an NBD socket being one file ("the control socket and an NBD socket are the same file")
    /// and two devices sharing a writeback-file, but never compares a writeback-file with the sockets. At start
    /// ZramdService.Start makes the devices first, so the device's BackingFile creates a regular file at the socket's
    /// path, then the listener finds it there and the start fails with exit 1 and "cannot listen on unix:PATH: PATH
    /// exists and is not a socket: remove it or choose another path", after which the failed start deletes the file
    /// again: the admin is told to remove a file that is not there, and the key at fault is never named. README: a
    /// configuration error is exit 78 with "one line naming the file, line, section, key, value and why; nothing is
    /// started". Expected: refused before anything starts, exit 78, naming writeback-file (or listen/control).
    /// </summary>
    [Theory]
    [InlineData("zramd.sock")]
    [InlineData("zramd.ctl")]
    public void A_writeback_file_on_a_socket_path_is_a_configuration_error(string socketFile)
    {
        string socket = Path.Combine(_dir, "zramd.sock");
        string control = Path.Combine(_dir, "zramd.ctl");
        (int code, string stderr) = RunWith(
            $"[zramd]\nlisten = unix:{socket}\ncontrol = {control}\n\n[zram0]\nzram-size = 16M\nwriteback-file = {Path.Combine(_dir, socketFile)}\n");
        Assert.True(code == 78, $"exit {code}, expected 78 (configuration error); stderr:\n{stderr}");
        Assert.Contains("writeback-file", stderr, StringComparison.Ordinal);
    }

    /// <summary>
    /// A writeback-file that is the configuration file itself (a copy-paste slip). The loader compares writeback files
    /// with one another by identity (FileIdentity: symlinks, hard links), but not with the file it has just read: the
    /// device's BackingFile opens it, cuts it to 0 and sizes it to the device (BackingFile's constructor: SetLength(0)),
    /// and deletes it when zramd stops, so the daemon runs and the configuration is gone for the next start. Expected:
    /// a configuration error (exit 78) naming writeback-file, and the file left as it is (README: a configuration
    /// error starts nothing; "leaving the file as it is" for a writeback-file zramd refuses).
    /// </summary>
    [Fact]
    public void A_writeback_file_that_is_the_configuration_file_is_refused_and_the_file_kept()
    {
        string file = Path.Combine(_dir, "zramd.conf");
        string config = $"[zram0]\nzram-size = 16M\nwriteback-file = {file}\n";
        File.WriteAllText(file, config);
        using ZramdProcess process = StartAndStop(_dir, file, out int code);
        Assert.True(File.Exists(file) && File.ReadAllText(file) == config,
            $"the configuration file was {(File.Exists(file) ? $"changed ({new FileInfo(file).Length} bytes)" : "deleted")}; exit {code}; stderr:\n{process.StandardError}");
        Assert.Equal(78, code);
        Assert.Contains("writeback-file", process.StandardError, StringComparison.Ordinal);
    }

    /// <summary>Runs zramd with <paramref name="configFile"/> until it exits or starts; one that started is stopped as
    /// systemd would (SIGTERM), so the caller sees what is left of the files it named.</summary>
    internal static ZramdProcess StartAndStop(string dir, string configFile, out int exitCode)
    {
        ZramdProcess process = ZramdProcess.Start(
            ["--config", configFile, "--listen", "unix:" + Path.Combine(dir, "zramd.sock")],
            new Dictionary<string, string> { ["XDG_RUNTIME_DIR"] = dir });
        var clock = Stopwatch.StartNew();
        while (!process.HasExited && !process.StandardError.Contains("attach with:", StringComparison.Ordinal) && clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            Thread.Sleep(50);
        }

        if (!process.HasExited)
        {
            process.Terminate();
        }

        exitCode = process.WaitForExit(TimeSpan.FromSeconds(60));
        return process;
    }
}
