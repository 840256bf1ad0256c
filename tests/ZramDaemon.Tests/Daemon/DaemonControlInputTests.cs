using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace ZramDaemon.Tests.Daemon;

/// <summary>One real zramd for the malformed control requests below.</summary>
public sealed class ControlInputDaemon : IDisposable
{
    public RunningDaemon Daemon { get; } = RunningDaemon.Start(["--size", "16M"]);

    public void Dispose() => Daemon.Dispose();
}

/// <summary>
/// Malformed and refused requests sent as raw bytes to the real daemon's control socket: each gets exactly one
/// JSON line, <c>{"ok":false,"error":...}</c>, saying what was wrong, and the daemon goes on answering.
/// </summary>
public sealed class DaemonControlInputTests(ControlInputDaemon fixture) : IClassFixture<ControlInputDaemon>
{
    public static TheoryData<string, string> BadRequests => new()
    {
        { "\n", "empty request: send status, compact [NAME], set NAME KEY=VALUE, stats NAME, classes NAME, reset NAME, idle NAME, recompress NAME or writeback NAME" },
        { "   \t \n", "empty request" },
        { "frobnicate\n", "unknown request 'frobnicate'" },
        { "STATUS\n", "unknown request 'STATUS'" },
        { "status zram0\n", "wrong arguments for status: status takes no arguments" },
        { "compact zram0 zram1\n", "wrong arguments for compact: compact [NAME]" },
        { "stats\n", "wrong arguments for stats: stats NAME" },
        { "classes a b\n", "wrong arguments for classes: classes NAME" },
        { "reset\n", "wrong arguments for reset: reset NAME" },
        { "set zram0\n", "wrong arguments for set: set NAME KEY=VALUE (mem_limit=SIZE, mem_used_max=0, writeback_limit=SIZE or comp_algorithm=ALGORITHM)" },
        { "set zram0 mem_limit\n", "'mem_limit' is not an assignment: write set NAME KEY=VALUE (mem_limit=SIZE, mem_used_max=0, writeback_limit=SIZE or comp_algorithm=ALGORITHM)" },
        { "set zram0 =5M\n", "'=5M' is not an assignment" },
        { "set zram0 disksize=1G\n", "'disksize' cannot be set: set takes mem_limit=SIZE, mem_used_max=0, writeback_limit=SIZE or comp_algorithm=ALGORITHM" },
        { "set zram0 mem_limit=lots\n", "mem_limit: 'lots' is not a size" },
        { "set zram0 mem_limit=-1\n", "mem_limit: '-1' is not a size" },
        { "set zram0 mem_limit=99999999999T\n", "mem_limit: '99999999999T' is too large" },
        { "set zram0 mem_used_max=5M\n", "mem_used_max: only 0 can be written (it restarts the peak from the current usage)" },
        { "set zram0 comp_algorithm=lzo\n", "comp_algorithm: 'lzo' is not a compression algorithm" },
        { "set zram0 writeback_limit=lots\n", "writeback_limit: 'lots' is not a size" },
        { "set zram0 writeback_limit=1G\n", "writeback_limit: zram0 has no writeback-file, so it writes nothing back" },
        { "stats zram9\n", "no device 'zram9': this daemon has zram0" },
        { "idle\n", "wrong arguments for idle" },
        { "recompress zram0 threshold=9999\n", "'threshold=9999': threshold is a size in bytes below the huge class size, 0 for none (objects smaller are left as they are)" },
        { "recompress zram0 type=cold\n", "'type=cold': the type is idle, huge, huge_idle or all" },
        { "recompress zram0\n", "zram0 has no recompression algorithm: set recompress-algorithm" },
        { "writeback zram0 max_pages=x\n", "'max_pages=x': max_pages is a whole number of pages" },
        { "writeback zram0\n", "zram0 has no backing file: set writeback-file" },
        { "compact zram9\n", "no device 'zram9'" },
        { "reset ../zram0\n", "no device '../zram0'" },
        { "status\0\n", "unknown request 'status\0'" },
        { "\u00ff\u00fe\n", "unknown request" },
        { new string('x', 5000) + "\n", "send one request line of at most 4096 bytes, ended by a newline" },
        { "", "send one request line of at most 4096 bytes" },
    };

    /// <summary>Sends <paramref name="raw"/> (Latin-1, so that any byte can be sent), closes the sending side,
    /// and returns everything the daemon answered.</summary>
    private string Send(string raw)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(fixture.Daemon.ControlPath));
        socket.ReceiveTimeout = 20_000;
        socket.Send(Encoding.Latin1.GetBytes(raw));
        socket.Shutdown(SocketShutdown.Send);
        var answer = new MemoryStream();
        var buffer = new byte[4096];
        int n;
        while ((n = socket.Receive(buffer)) > 0)
        {
            answer.Write(buffer, 0, n);
        }

        return Encoding.UTF8.GetString(answer.ToArray());
    }

    [Theory]
    [MemberData(nameof(BadRequests))]
    public void Each_bad_request_gets_one_error_line_and_the_daemon_goes_on(string raw, string expected)
    {
        string answer = Send(raw);
        Assert.EndsWith("\n", answer, StringComparison.Ordinal);
        Assert.Equal(1, answer.Count(c => c == '\n'));
        using var reply = JsonDocument.Parse(answer);
        Assert.False(reply.RootElement.GetProperty("ok").GetBoolean());
        string error = reply.RootElement.GetProperty("error").GetString()!;
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error);

        // Nothing was changed, and the next request is answered.
        using var status = JsonDocument.Parse(Send("status\n"));
        Assert.True(status.RootElement.GetProperty("ok").GetBoolean());
        JsonElement device = status.RootElement.GetProperty("devices")[0];
        Assert.Equal(0, device.GetProperty("mem_limit").GetInt64());
        Assert.Equal(16L << 20, device.GetProperty("disksize").GetInt64());
    }

    /// <summary>Out of file descriptors (EMFILE), accept(2) on the control socket fails at once; the control socket's
    /// accept loop then waits 100 ms before it retries, as the NBD listeners' loop does (both use AcceptBackOff), so a
    /// full table costs about ten "control: accept failed" lines a second. Found by review: the control loop logged and
    /// retried with no pause, a CPU spun and the journal got some 40,000 lines a second for as long as the connections
    /// stayed open. Run under prlimit --nofile so that a few hundred connections reach the limit.</summary>
    [Fact]
    public async Task Out_of_file_descriptors_the_control_socket_retries_accept_shortly_rather_than_spinning()
    {
        string dir = Directory.CreateTempSubdirectory("zramd-e2e-").FullName;
        var connections = new List<Socket>();
        try
        {
            string control = Path.Combine(dir, "zramd.ctl");
            var info = new System.Diagnostics.ProcessStartInfo("prlimit") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (string arg in new[] { "--nofile=200:200", "dotnet", ZramdProcess.DllPath, "--size", "16M", "--listen", "unix:" + Path.Combine(dir, "zramd.sock"), "--control", control })
            {
                info.ArgumentList.Add(arg);
            }

            foreach (string name in info.Environment.Keys.Where(k => k.StartsWith("ZRAMD_", StringComparison.Ordinal) || k.StartsWith("LISTEN_", StringComparison.Ordinal) || k is "NOTIFY_SOCKET" or "JOURNAL_STREAM" or "WATCHDOG_USEC").ToList())
            {
                info.Environment.Remove(name);
            }

            int failures = 0;
            bool started = false;
            using var zramd = System.Diagnostics.Process.Start(info)!;
            zramd.ErrorDataReceived += (_, e) =>
            {
                if (e.Data?.Contains("control: accept failed", StringComparison.Ordinal) == true)
                {
                    Interlocked.Increment(ref failures);
                }
                else if (e.Data?.Contains("attach with:", StringComparison.Ordinal) == true)
                {
                    Volatile.Write(ref started, true);
                }
            };
            zramd.BeginErrorReadLine();
            zramd.BeginOutputReadLine();
            try
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                while (!Volatile.Read(ref started) && clock.Elapsed < TimeSpan.FromSeconds(60) && !zramd.HasExited)
                {
                    await Task.Delay(20);
                }

                Assert.True(Volatile.Read(ref started), "zramd did not start");

                // Past the limit the connections wait in the backlog, then connect fails (EAGAIN) until the daemon
                // accepts again. Connect until the daemon says it has run out: a fixed number of refusals in a row was
                // not enough on a loaded CI machine, where the accept thread fell behind for a second and the test
                // gave up with fewer connections than descriptors (CI of 83e6130).
                var filling = System.Diagnostics.Stopwatch.StartNew();
                int refusals = 0;
                while (Volatile.Read(ref failures) == 0 && filling.Elapsed < TimeSpan.FromSeconds(60) && !zramd.HasExited)
                {
                    var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    try
                    {
                        await socket.ConnectAsync(new UnixDomainSocketEndPoint(control)).WaitAsync(TimeSpan.FromMilliseconds(500));
                        connections.Add(socket);
                    }
                    catch (Exception e) when (e is TimeoutException or SocketException)
                    {
                        socket.Dispose();
                        refusals++;
                        await Task.Delay(50);
                    }
                }

                await Task.Delay(1000);
                int before = Volatile.Read(ref failures);
                await Task.Delay(2000);
                int inTwoSeconds = Volatile.Read(ref failures) - before;
                Assert.True(before > 0, $"the descriptor limit was never reached: {connections.Count} connections and {refusals} refusals in {filling.Elapsed.TotalSeconds:F1} s");
                Assert.True(inTwoSeconds < 200, $"{inTwoSeconds} 'accept failed' lines in 2 s");
            }
            finally
            {
                foreach (Socket socket in connections)
                {
                    socket.Dispose();
                }

                if (!zramd.HasExited)
                {
                    zramd.Kill(entireProcessTree: true);
                }

                zramd.WaitForExit();
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
