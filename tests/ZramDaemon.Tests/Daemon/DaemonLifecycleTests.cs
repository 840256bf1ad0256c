using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;

namespace ZramDaemon.Tests.Daemon;

/// <summary>Start, systemd notification, logging, swap safety and SIGTERM of the real zramd process.</summary>
public sealed partial class DaemonLifecycleTests : IDisposable
{
    // Each test's own directory (xunit makes an instance per test) for sockets and files it names; those that start
    // a RunningDaemon let it make its own.
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-e2e-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The datagram socket systemd's NOTIFY_SOCKET names, bound in <paramref name="dir"/>, for a test to read
    /// what zramd sends (READY=1, STATUS=, WATCHDOG=1, STOPPING=1).</summary>
    private static Socket BindNotifySocket(string dir, out string path)
    {
        path = Path.Combine(dir, "notify");
        var notify = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        notify.Bind(new UnixDomainSocketEndPoint(path));
        return notify;
    }

    private static List<string> ReceiveAll(Socket socket, Func<List<string>, bool> until, TimeSpan timeout)
    {
        var messages = new List<string>();
        byte[] buffer = new byte[4096];
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!until(messages))
        {
            int left = (int)(timeout - clock.Elapsed).TotalMilliseconds;
            Assert.True(left > 0, "timed out waiting for notifications; got: " + string.Join(" | ", messages));
            socket.ReceiveTimeout = left;
            int n = socket.Receive(buffer);
            messages.Add(Encoding.UTF8.GetString(buffer, 0, n));
        }

        return messages;
    }

    [Fact]
    public void The_default_socket_rule_notify_ready_watchdog_then_stopping_and_exit_0_on_sigterm()
    {
        using Socket notify = BindNotifySocket(_dir, out string notifyPath);

        // No --listen: the socket goes to $RUNTIME_DIRECTORY, as under systemd's RuntimeDirectory=.
        using ZramdProcess zramd = ZramdProcess.Start(["--size", "16M"], new Dictionary<string, string>
        {
            ["RUNTIME_DIRECTORY"] = _dir,
            ["NOTIFY_SOCKET"] = notifyPath,
            ["WATCHDOG_USEC"] = "400000",
        });
        string socket = Path.Combine(_dir, "zramd.sock");
        List<string> start = ReceiveAll(notify, m => m.Any(s => s.Contains("READY=1", StringComparison.Ordinal)), TimeSpan.FromSeconds(60));
        string ready = start.Single(s => s.Contains("READY=1", StringComparison.Ordinal));
        Assert.Contains("STATUS=serving zram0 (16M lz4) on unix:" + socket, ready, StringComparison.Ordinal);

        // READY means accepting: a client connects at once.
        ClientTool.Result info = ClientTool.Run("nbdinfo", ["--size", $"nbd+unix:///zram0?socket={socket}"]).EnsureSuccess();
        Assert.Equal((16L << 20).ToString(CultureInfo.InvariantCulture), info.Stdout.Trim());

        // The start line says where and how to attach.
        zramd.WaitForOutput("attach with:", TimeSpan.FromSeconds(5));
        Assert.Contains($"nbd-client -unix {socket} /dev/nbd0 -N zram0 -b 4096", zramd.StandardError, StringComparison.Ordinal);
        Assert.Contains($"nbdinfo 'nbd+unix:///zram0?socket={socket}'", zramd.StandardError, StringComparison.Ordinal);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite, File.GetUnixFileMode(socket));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(_dir, "zramd.ctl")));

        // WatchdogSec=0.4s: WATCHDOG=1 every 0.2 s.
        ReceiveAll(notify, m => m.Count(s => s == "WATCHDOG=1") >= 2, TimeSpan.FromSeconds(10));

        zramd.Terminate();
        List<string> stop = ReceiveAll(notify, m => m.Any(s => s.StartsWith("STOPPING=1", StringComparison.Ordinal)), TimeSpan.FromSeconds(30));
        Assert.DoesNotContain(stop, s => s.Contains("READY=1", StringComparison.Ordinal));
        Assert.Equal(0, zramd.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.Contains("stopping: no clients connected", zramd.StandardError, StringComparison.Ordinal);
        Assert.False(File.Exists(socket), "the NBD socket file is removed at stop");
        Assert.False(File.Exists(Path.Combine(_dir, "zramd.ctl")), "the control socket file is removed at stop");
    }

    /// <summary>WatchdogSec= at the edges of what systemd takes: the ping period, half of $WATCHDOG_USEC, is clamped to
    /// the 1 ms to 2^32-2 ms a PeriodicTimer takes and parsed without overflow, so zramd pings and stops cleanly.
    /// Found by review: WatchdogSec=1ms (500 us) or of 100 days or more threw inside WatchdogAsync, whose task faulted
    /// silently and never sent WATCHDOG=1 (systemd then kills zramd and every page it holds; the fault surfaced at
    /// SIGTERM as "zramd could not start" with a stack trace, exit 1); past TimeSpan's range SystemdNotifier's
    /// constructor threw OverflowException, unhandled, exit 134 before READY.</summary>
    [Theory]
    [InlineData("400000")]
    [InlineData("1000")]
    [InlineData("8640000000000")]
    [InlineData("9223372036854775807")]
    public void Any_watchdog_interval_systemd_passes_gets_watchdog_pings_and_a_clean_stop(string watchdogUsec)
    {
        using Socket notify = BindNotifySocket(_dir, out string notifyPath);
        using ZramdProcess zramd = ZramdProcess.Start(["--size", "16M"], new Dictionary<string, string>
        {
            ["RUNTIME_DIRECTORY"] = _dir,
            ["NOTIFY_SOCKET"] = notifyPath,
            ["WATCHDOG_USEC"] = watchdogUsec,
        });
        // Past TimeSpan's range a watchdog that never fires in practice may as well be none: READY=1 is enough there.
        string expected = watchdogUsec.Length > 15 ? "READY=1" : "WATCHDOG=1";
        Exception? missing = Record.Exception(() => ReceiveAll(notify, m => m.Any(s => s.Contains(expected, StringComparison.Ordinal)), TimeSpan.FromSeconds(30)));
        Assert.True(missing is null, $"no {expected} was sent; stderr:\n" + zramd.StandardError);

        zramd.Terminate();
        Assert.Equal(0, zramd.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.DoesNotContain("   at ", zramd.StandardError, StringComparison.Ordinal);
    }

    /// <summary>A notify socket nobody reads (systemd busy, or stuck): a Unix datagram socket queues 10 messages
    /// (net.unix.max_dgram_qlen) and then blocks its sender. With WATCHDOG=1 every millisecond the queue is full within
    /// 10 ms, and zramd's blocking send held every later notification, STOPPING=1 at SIGTERM included: the stop hung
    /// for ever (the suite's run of the 1 ms watchdog row hung so once, when SIGTERM came more than 10 ms after the ping it
    /// waited for). A send now waits at most a second, and a message that finds no room then is dropped (notification
    /// is advisory; the next ping comes anyway).</summary>
    [Fact]
    public void A_notify_socket_nobody_reads_does_not_hold_up_the_stop()
    {
        using Socket notify = BindNotifySocket(_dir, out string notifyPath);
        using ZramdProcess zramd = ZramdProcess.Start(["--size", "16M"], new Dictionary<string, string>
        {
            ["RUNTIME_DIRECTORY"] = _dir,
            ["NOTIFY_SOCKET"] = notifyPath,
            ["WATCHDOG_USEC"] = "2000",
        });
        ReceiveAll(notify, m => m.Contains("WATCHDOG=1"), TimeSpan.FromSeconds(30));

        // Nothing read from here on: the queue fills with pings.
        Thread.Sleep(500);
        zramd.Terminate();
        Assert.Equal(0, zramd.WaitForExit(TimeSpan.FromSeconds(20)));
        Assert.Contains("stopping: no clients connected", zramd.StandardError, StringComparison.Ordinal);
    }

    /// <summary>SIGHUP, the reload (systemctl reload zramd), reads the configuration again and says so: zramd keeps
    /// serving what it stores, and with nothing changed nothing waits for a restart. Found by review: SIGHUP kept its
    /// default action, and zramd died at once, with no log line, no STOPPING=1, no detach of the kernel devices it
    /// attached (attach =), and every stored page gone. DaemonReloadTests has what a reload applies.</summary>
    [Fact]
    public void Sighup_does_not_kill_the_daemon_and_its_data()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"]);
        // The signal masks, for the message: in two full-suite runs the warning never came while zramd lived on.
        string masks = string.Join(", ", File.ReadLines($"/proc/{daemon.Process.Id}/status").Where(l => l.StartsWith("Sig", StringComparison.Ordinal)));
        using (var hup = System.Diagnostics.Process.Start("kill", ["-HUP", daemon.Process.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            hup.WaitForExit();
        }

        Thread.Sleep(2000);
        Assert.False(daemon.Process.HasExited, "zramd died of SIGHUP; stderr:\n" + daemon.Process.StandardError);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!daemon.Process.StandardError.Contains("SIGHUP: configuration read again", StringComparison.Ordinal)
            && clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            Thread.Sleep(50);
        }

        Assert.True(daemon.Process.StandardError.Contains("SIGHUP: configuration read again (none (embedded default)): log-level = info, tls-mode = off; settings changed that wait for the next start: 0", StringComparison.Ordinal),
            $"no reload ({masks}); stderr:\n{daemon.Process.StandardError}");
        ClientTool.Run("nbdinfo", ["--size", daemon.Uri()]).EnsureSuccess();
        Assert.Equal(0, daemon.Stop());
    }

    /// <summary>SIGHUP again and again (every millisecond or so, as a script that reloads in a loop) from the moment
    /// zramd reads its configuration until it serves: zramd lives through all of it, serves, and reloads. Its
    /// configuration is a FIFO, so the test knows zramd's Main has run (it opened the file) and holds it there while
    /// the signals come. Found by review: the handler was registered only after the configuration was loaded and the
    /// logging set up, and a SIGHUP before that ended zramd at once (exit 129, killed by SIGHUP, nothing logged).
    /// What comes before Main, the runtime's own start, no code of zramd's can cover. A reload that blocks (here on
    /// the FIFO, after the one the test feeds) must not hold the stop.</summary>
    [Fact]
    public async Task Sighup_again_and_again_through_the_start_does_not_kill_the_daemon()
    {
        string fifo = Path.Combine(_dir, "zramd.conf");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", [fifo]))
        {
            mkfifo.WaitForExit();
            Assert.Equal(0, mkfifo.ExitCode);
        }

        string socket = Path.Combine(_dir, "zramd.sock");
        using ZramdProcess zramd = ZramdProcess.Start(
            ["--config", fifo, "--listen", "unix:" + socket, "--control", Path.Combine(_dir, "zramd.ctl")],
            new Dictionary<string, string> { ["XDG_RUNTIME_DIR"] = _dir });

        // Opening the write end returns once zramd has opened the FIFO to read its configuration.
        Task<FileStream> opening = Task.Run(() => new FileStream(fifo, FileMode.Open, FileAccess.Write));
        Assert.True(await Task.WhenAny(opening, Task.Delay(TimeSpan.FromSeconds(60))) == opening, "zramd never opened its configuration; stderr:\n" + zramd.StandardError);
        string pid = zramd.Id.ToString(CultureInfo.InvariantCulture);
        using var hangups = System.Diagnostics.Process.Start("bash", ["-c", $"while kill -HUP {pid} 2>/dev/null; do sleep 0.001; done"]);
        try
        {
            await Task.Delay(200); // signals while zramd waits for its configuration
            try
            {
                await using FileStream writer = await opening;
                await writer.WriteAsync("[zram0]\nzram-size = 16M\n"u8.ToArray());
            }
            catch (IOException)
            {
                // Broken pipe: zramd is gone, which WaitForOutput reports with its exit code.
            }

            zramd.WaitForOutput("attach with:", TimeSpan.FromSeconds(60));

            // Serving, zramd reloads: it reads the FIFO again, which blocks until there is a writer.
            Task<FileStream> reopening = Task.Run(() => new FileStream(fifo, FileMode.Open, FileAccess.Write));
            Assert.True(await Task.WhenAny(reopening, Task.Delay(TimeSpan.FromSeconds(30))) == reopening, "zramd never read its configuration again; stderr:\n" + zramd.StandardError);
            await using (FileStream writer = await reopening)
            {
                await writer.WriteAsync("[zram0]\nzram-size = 16M\n"u8.ToArray());
            }

            zramd.WaitForOutput("SIGHUP: configuration read again", TimeSpan.FromSeconds(30));
        }
        finally
        {
            hangups.Kill();
            hangups.WaitForExit();
        }

        Assert.False(zramd.HasExited, "zramd died of SIGHUP; stderr:\n" + zramd.StandardError);
        ClientTool.Result size = ClientTool.Run("nbdinfo", ["--size", $"nbd+unix:///zram0?socket={socket}"]).EnsureSuccess();
        Assert.Equal((16L << 20).ToString(CultureInfo.InvariantCulture), size.Stdout.Trim());

        // The SIGHUPs after that reload started another, which waits for a writer of the FIFO that never comes: the
        // stop does not wait for it.
        zramd.Terminate();
        Assert.Equal(0, zramd.WaitForExit(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public void Under_systemd_status_is_refreshed_with_each_devices_data_ratio_and_clients()
    {
        string dir = Directory.CreateTempSubdirectory("zramd-e2e-").FullName;
        using Socket notify = BindNotifySocket(dir, out string notifyPath);
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"], new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notifyPath }, dir);
        ReceiveAll(notify, m => m.Any(s => s.StartsWith("READY=1", StringComparison.Ordinal)), TimeSpan.FromSeconds(60));

        // A client writes 256 pages of text (1 MiB, compressible) and stays connected until told to go.
        var info = new System.Diagnostics.ProcessStartInfo(ClientTool.Python) { RedirectStandardOutput = true, RedirectStandardInput = true, UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add($$"""
            import nbd, sys
            h = nbd.NBD(); h.connect_uri('{{daemon.Uri()}}')
            for i in range(256):
                h.pwrite(bytearray(b'page %010d of text. ' % i) * 160 + bytearray(96), i * 4096)
            print("written", flush=True)
            sys.stdin.readline()
            h.shutdown()
            """);
        using var client = System.Diagnostics.Process.Start(info)!;
        Assert.Equal("written", client.StandardOutput.ReadLine());

        Regex line = StatusLine();
        List<string> seen = ReceiveAll(notify, m => m.Any(s => line.Match(s) is { Success: true } x && x.Groups[3].Value == "1 client"), TimeSpan.FromSeconds(60));
        Match connected = line.Match(seen.Last());
        Assert.Equal("1M", connected.Groups[1].Value);
        double ratio = double.Parse(connected.Groups[2].Value, CultureInfo.InvariantCulture);
        Assert.True(ratio > 2, $"text pages compress better than {ratio}: {seen.Last()}");

        // The client leaves: the next summary says so, and the data stays.
        client.StandardInput.WriteLine();
        Assert.True(client.WaitForExit(60_000));
        seen = ReceiveAll(notify, m => m.Any(s => line.Match(s) is { Success: true } x && x.Groups[3].Value == "0 clients"), TimeSpan.FromSeconds(60));
        Assert.Equal("1M", line.Match(seen.Last()).Groups[1].Value);

        // After STOPPING=1, no periodic summary overwrites "stopping".
        daemon.Process.Terminate();
        Assert.Equal(0, daemon.Process.WaitForExit(TimeSpan.FromSeconds(60)));
        List<string> rest = [];
        notify.ReceiveTimeout = 1;
        byte[] buffer = new byte[4096];
        while (notify.Available > 0)
        {
            rest.Add(Encoding.UTF8.GetString(buffer, 0, notify.Receive(buffer)));
        }

        Assert.Equal("STOPPING=1\nSTATUS=stopping", rest.Last());
    }

    [Fact]
    public async Task Under_journald_every_line_has_a_priority_prefix_and_no_timestamp_and_swap_safety_is_reported()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"], new Dictionary<string, string> { ["JOURNAL_STREAM"] = "8:12345" });

        // Some NBD traffic first.
        ClientTool.Run("nbdinfo", ["--map", daemon.Uri()]).EnsureSuccess();
        string log = daemon.Process.StandardError;
        string[] lines = log.TrimEnd('\n').Split('\n');
        Assert.All(lines, line => Assert.Matches("^<[2-7]>", line));
        Assert.DoesNotContain(lines, line => Timestamp().IsMatch(line));
        Assert.Contains(lines, line => line.StartsWith("<6>serving zram0 on unix:", StringComparison.Ordinal));
        Assert.Contains(lines, line => line.StartsWith("<6>[zram0] zram-size = 16M, compression-algorithm = lz4", StringComparison.Ordinal));

        // Swap safety: each measure either took effect (checked in /proc) or was warned about with what to do.
        int pid = daemon.Process.Id;
        string status = File.ReadAllText($"/proc/{pid}/status");
        long lockedKb = long.Parse(LockedKb().Match(status).Groups[1].Value, CultureInfo.InvariantCulture);
        if (log.Contains("<6>memory locked (mlockall", StringComparison.Ordinal))
        {
            Assert.True(lockedKb > 0, "mlockall reported, yet VmLck is 0");
        }
        else
        {
            Assert.Contains("<4>could not lock memory (mlockall:", log, StringComparison.Ordinal);
            Assert.Equal(0, lockedKb);
        }

        int oomScore = int.Parse(File.ReadAllText($"/proc/{pid}/oom_score_adj").Trim(), CultureInfo.InvariantCulture);
        if (log.Contains("<6>oom_score_adj = -1000", StringComparison.Ordinal))
        {
            Assert.Equal(-1000, oomScore);
        }
        else
        {
            Assert.Contains("<4>could not set oom_score_adj to -1000", log, StringComparison.Ordinal);
        }

        // PF_MEMALLOC_NOIO (0x80000) in the flags of /proc/PID/task/TID/stat is what PR_SET_IO_FLUSHER sets. The
        // threads that serve NBD requests are the connection's own, named nbd-ID and nbd-ID.N; they exist while a
        // client is connected, so one stays connected while we look.
        using (Faults.WireClient client = await Faults.WireClient.OpenAsync(daemon.Socket, "zram0"))
        {
            List<ulong> FlagsOf(string prefix) => ProcThreads.StatFields(pid, prefix)
                .Select(fields => ulong.Parse(fields[9 - 3], CultureInfo.InvariantCulture))
                .ToList();
            // The connection's threads: one per request in flight (the default, 4), started once GO is answered.
            List<ulong> io = FlagsOf("nbd-");
            for (int i = 0; i < 300 && io.Count < Nbd.NbdServerOptions.DefaultWorkerThreadsPerConnection; i++)
            {
                await Task.Delay(50);
                io = FlagsOf("nbd-");
            }

            List<ulong> workers = FlagsOf(".NET TP Worker");
            Assert.Equal(Nbd.NbdServerOptions.DefaultWorkerThreadsPerConnection, io.Count);

            // The server's read-turn watchdog wakes a connection's reader: it is on the I/O path too.
            io.Add(Assert.Single(FlagsOf("read-turn-watch")));
            if (log.Contains("<6>I/O threads are PR_SET_IO_FLUSHER", StringComparison.Ordinal))
            {
                Assert.All(io, flags => Assert.True((flags & 0x80000) != 0, $"NBD I/O thread without PF_MEMALLOC_NOIO: flags 0x{flags:x}"));
                Assert.All(workers, flags => Assert.True((flags & 0x80000) != 0, $"thread-pool worker without PF_MEMALLOC_NOIO: flags 0x{flags:x}"));
            }
            else
            {
                Assert.Contains("<4>prctl(PR_SET_IO_FLUSHER) failed", log, StringComparison.Ordinal);
                Assert.All(io, flags => Assert.True((flags & 0x80000) == 0));
            }
        }

        Assert.Equal(0, daemon.Stop());
    }

    [Fact]
    public void Sigterm_with_writes_in_flight_finishes_every_acknowledged_write_and_exits_0()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "1G"]);

        // Pipelined writes, 32 in flight, each to a page of its own with contents that are not same-filled, so
        // that orig_data_size counts exactly the writes the device applied. The client reports when it has
        // been going for a while, and at the end how many writes were acknowledged, refused (ESHUTDOWN) or left
        // without a reply when the connection closed.
        string script = """
            h = nbd.NBD(); h.connect_uri(uri)
            pending = {}
            acked = failed = 0
            index = 0
            announced = False
            try:
                while True:
                    while len(pending) < 32:
                        page = bytearray(b'page%010d..' % index) * 256
                        pending[h.aio_pwrite(nbd.Buffer.from_bytearray(page), index * 4096)] = index
                        index += 1
                    h.poll(-1)
                    for cookie in list(pending):
                        try:
                            if h.aio_command_completed(cookie):
                                acked += 1
                                del pending[cookie]
                        except nbd.Error:
                            failed += 1
                            del pending[cookie]
                    if not announced and acked >= 2000:
                        print("writing", flush=True)
                        announced = True
            except nbd.Error as e:
                pass
            print("acked=%d failed=%d unanswered=%d" % (acked, failed, len(pending)), flush=True)
            """;
        var info = new System.Diagnostics.ProcessStartInfo(ClientTool.Python) { RedirectStandardOutput = true, UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add($"import nbd, sys\nuri = '{daemon.Uri()}'\n{script}");
        using var client = System.Diagnostics.Process.Start(info)!;
        Assert.Equal("writing", client.StandardOutput.ReadLine());

        daemon.Process.Terminate();
        string? summary = client.StandardOutput.ReadLine();
        Assert.True(client.WaitForExit(60_000));
        Assert.Equal(0, daemon.Process.WaitForExit(TimeSpan.FromSeconds(60)));

        Match counts = Summary().Match(summary ?? string.Empty);
        Assert.True(counts.Success, $"client said: {summary}");
        long acked = long.Parse(counts.Groups[1].Value, CultureInfo.InvariantCulture);
        long unanswered = long.Parse(counts.Groups[3].Value, CultureInfo.InvariantCulture);
        Assert.True(acked >= 2000);

        // The daemon reports what its device held when every request in flight had finished. Its device is gone
        // once it exits, so the contents are checked byte for byte in-process instead, after the same stop
        // (NbdFaultTests.Stopping_with_writes_in_flight_keeps_every_acknowledged_write_byte_for_byte_...).
        string log = daemon.Process.StandardError;
        Assert.Contains("STOPPING WITH 1 CLIENT(S) CONNECTED (zram0: 1)", log, StringComparison.Ordinal);
        long stored = long.Parse(Released().Match(log).Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.True(stored >= acked * 4096, $"acknowledged {acked} writes but only {stored / 4096} pages were stored");
        // Unanswered: sent after the server stopped reading; they may or may not have been applied.
        Assert.True(stored <= (acked + unanswered) * 4096, $"stored {stored / 4096} pages, more than the {acked} acknowledged and {unanswered} unanswered writes");
    }

    [Fact]
    public void Sigterm_right_after_trims_flushes_their_deferred_frees_before_exit_0()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "64M"]);

        // 4096 distinct text pages, then one trim of them all: 4096 frees queued (below the queue's own drain
        // threshold), and SIGTERM at once, usually before the background thread's next look (once a second).
        ClientTool.PythonNbd(daemon.Uri(), """
            h = nbd.NBD(); h.connect_uri(uri)
            for i in range(4096):
                h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b'page %010d of text. ' % i) * 160 + bytearray(96)), i * 4096)
                while h.aio_in_flight() >= 64:
                    h.poll(-1)
            while h.aio_in_flight() > 0:
                h.poll(-1)
            h.trim(4096 * 4096, 0)
            """).EnsureSuccess();
        Assert.Equal(0, daemon.Stop());
        Assert.Contains("zram0: released 0 bytes of stored data; deferred frees pending: 0", daemon.Process.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public void A_socket_that_cannot_be_bound_fails_the_start_with_exit_1_and_leaves_the_running_daemon_alone()
    {
        using RunningDaemon first = RunningDaemon.Start(["--size", "16M"]);

        // Same NBD socket, its own control socket: the NBD socket is live, so the second start must fail.
        string otherControl = Path.Combine(first.Directory, "other.ctl");
        (int code, _, string stderr) = ZramdProcess.Run(["--listen", "unix:" + first.Socket, "--size", "16M", "--control", otherControl]);
        Assert.Equal(1, code);
        Assert.Contains($"zramd could not start: cannot listen on unix:{first.Socket}", stderr, StringComparison.Ordinal);
        Assert.Contains("in use", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal); // no stack trace for an expected failure
        Assert.False(File.Exists(otherControl), "the failed start must not leave its control socket behind");

        ClientTool.Run("nbdinfo", ["--size", first.Uri()]).EnsureSuccess();
        (code, _, _) = ZramdProcess.Run(["--listen", "tcp:192.0.2.1:10809", "--size", "16M", "--control", otherControl]);
        Assert.Equal(1, code);
        Assert.Equal(0, first.Stop());
    }

    /// <summary>A --listen path that holds a regular file fails the start ("... exists and is not a socket") and the
    /// file is kept: the NBD listener and the control socket share UnixSocketFile.RemoveStale, which removes only a
    /// stale socket. Found by review: NbdListener.BindUnix's own check was File.Exists, so a regular file at the path
    /// was taken for a stale socket and deleted, and zramd served there; a typo (unix:/etc/zramd/zramd.conf)
    /// destroyed the file.</summary>
    [Fact]
    public void A_listen_path_that_holds_a_regular_file_fails_the_start_and_keeps_the_file()
    {
        string precious = Path.Combine(_dir, "notes.txt");
        File.WriteAllText(precious, "precious\n");
        using ZramdProcess process = ZramdProcess.Start(["--listen", "unix:" + precious, "--control", Path.Combine(_dir, "zramd.ctl"), "--size", "16M"]);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!process.HasExited && !process.StandardError.Contains("attach with:", StringComparison.Ordinal) && clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            Thread.Sleep(20);
        }

        string? content = null;
        try
        {
            content = File.ReadAllText(precious);
        }
        catch (IOException)
        {
            // Replaced by zramd's socket (ENXIO), or gone.
        }

        Assert.True(content == "precious\n", "the regular file at the listen path was deleted and replaced by the NBD socket; stderr:\n" + process.StandardError);
        Assert.Equal(1, process.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.Contains("not a socket", process.StandardError, StringComparison.Ordinal);
    }

    /// <summary>A socket systemd passes that is not a listening stream socket (a .socket unit with ListenDatagram=, or
    /// Accept=yes passing a connection; also a descriptor that is no socket or not open) fails the start in one line
    /// naming the fd and what it is ("cannot serve the sockets systemd passed: fd 3 is a datagram socket ..."), exit 1,
    /// before anything is served. Found by review: it was taken as it was: zramd logged "serving zram0 on tcp:...",
    /// sent READY=1 and answered the control socket, but accepted nothing (its accept loop faulted with "You must call
    /// the Listen method"); the failure only showed at SIGTERM, as "zramd could not start" with a stack trace and
    /// exit 1.</summary>
    [Fact]
    public void Socket_activation_with_a_datagram_socket_fails_the_start_in_one_line()
    {
        int port;
        using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp))
        {
            probe.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
            port = ((System.Net.IPEndPoint)probe.LocalEndPoint!).Port;
        }

        using var activator = SocketActivator.Start([$"127.0.0.1:{port}"], _dir, ["--size", "16M", "--control", Path.Combine(_dir, "zramd.ctl")], ["--datagram"]);

        // systemd-socket-activate execs zramd on the first datagram.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using (var client = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp))
        {
            while (!activator.Log.Contains("Execing", StringComparison.Ordinal) && clock.Elapsed < TimeSpan.FromSeconds(10))
            {
                client.SendTo([1], new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, port));
                Thread.Sleep(100);
            }
        }

        Assert.True(activator.WaitForExit(TimeSpan.FromSeconds(30)), "zramd kept running on a socket it cannot accept on:\n" + activator.Log);
        Assert.Equal(1, activator.ExitCode);
        Assert.DoesNotContain("serving zram0 on", activator.Log, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", activator.Log, StringComparison.Ordinal);
    }

    /// <summary>A LISTEN_FDS larger than the descriptors passed (here 2 for one socket) fails the start in one line
    /// that blames LISTEN_FDS, exit 1. Found by review: past the socket passed, fd 4 is the runtime's own (a pipe),
    /// and the error named it as if systemd had passed it: "fd 4 (systemd) is not a socket: zramd needs a listening
    /// stream socket (ListenStream=)", sending the admin to the .socket unit.</summary>
    [Fact]
    public void Socket_activation_with_listen_fds_past_the_sockets_passed_fails_in_one_line_blaming_listen_fds()
    {
        string socket = Path.Combine(_dir, "activated.sock");
        using var activator = SocketActivator.Start([socket], _dir, ["--size", "16M", "--control", Path.Combine(_dir, "zramd.ctl")], listenFds: 2);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!File.Exists(socket) && clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(20);
        }

        // systemd-socket-activate execs zramd on the first connection.
        using (var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            client.Connect(new UnixDomainSocketEndPoint(socket));
            Assert.True(activator.WaitForExit(TimeSpan.FromSeconds(30)), "zramd kept running with a wrong LISTEN_FDS:\n" + activator.Log);
        }

        Assert.Equal(1, activator.ExitCode);
        Assert.Contains(
            "zramd could not start: cannot serve the sockets systemd passed: LISTEN_FDS=2 names fds 3 to 4, but fd 4 was not passed: it is close-on-exec, so one of zramd's own (the runtime opened it); LISTEN_FDS counts more descriptors than were passed",
            activator.Log,
            StringComparison.Ordinal);
        Assert.DoesNotContain("(systemd)", activator.Log, StringComparison.Ordinal);
        Assert.DoesNotContain("serving zram0 on", activator.Log, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", activator.Log, StringComparison.Ordinal);
    }

    [Fact]
    public void Socket_activation_serves_the_socket_systemd_passed()
    {
        string socket = Path.Combine(_dir, "activated.sock");
        string control = Path.Combine(_dir, "zramd.ctl");
        using var activator = SocketActivator.Start([socket], _dir, ["--size", "16M", "--control", control]);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!File.Exists(socket) && clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(20);
        }

        // The first client waits in the backlog while zramd starts, then is served.
        ClientTool.Result size = ClientTool.Run("nbdinfo", ["--size", $"nbd+unix:///zram0?socket={socket}"]).EnsureSuccess();
        Assert.Equal((16L << 20).ToString(CultureInfo.InvariantCulture), size.Stdout.Trim());
        Assert.Equal(0, ZramdProcess.Run(["status", "--control", control]).ExitCode);

        Assert.Equal(0, activator.Stop());
        Assert.Contains("socket activation: serving the 1 socket(s) systemd passed", activator.Log, StringComparison.Ordinal);
        Assert.Contains($"attach with: nbd-client -unix {socket} /dev/nbd0 -N zram0 -b 4096", activator.Log, StringComparison.Ordinal);
    }

    [GeneratedRegex(@"^STATUS=zram0: data (\S+), compr \S+, ratio ([0-9.]+), (\d+ clients?)$")]
    private static partial Regex StatusLine();

    [GeneratedRegex(@"\d\d:\d\d:\d\d")]
    private static partial Regex Timestamp();

    [GeneratedRegex(@"VmLck:\s+(\d+) kB")]
    private static partial Regex LockedKb();

    [GeneratedRegex(@"acked=(\d+) failed=(\d+) unanswered=(\d+)")]
    private static partial Regex Summary();

    [GeneratedRegex(@"zram0: released (\d+) bytes of stored data")]
    private static partial Regex Released();
}
