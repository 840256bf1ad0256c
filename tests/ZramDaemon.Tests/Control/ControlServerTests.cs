using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using ZramDaemon.Control;

namespace ZramDaemon.Tests.Control;

/// <summary>The control socket's transport: framing, permissions, stale and live socket files. (What the
/// verbs do to real devices is tested against the real daemon in the process tests.)</summary>
public sealed class ControlServerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-ctl-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Answers with what it understood, so the test sees the request arrive parsed.</summary>
    private sealed class EchoHandler : IControlHandler
    {
        public ControlReply Handle(ControlRequest request, CancellationToken stopping) => request.Verb == "reset"
            ? throw new InvalidOperationException("device busy")
            : ControlReply.Success($"got {request}");
    }

    private static string RawExchange(string path, byte[] request)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(path));
        socket.Send(request);
        socket.Shutdown(SocketShutdown.Send);
        var reply = new MemoryStream();
        byte[] buffer = new byte[4096];
        int n;
        while ((n = socket.Receive(buffer)) > 0)
        {
            reply.Write(buffer, 0, n);
        }

        return Encoding.UTF8.GetString(reply.ToArray());
    }

    [Fact]
    public async Task Answers_one_json_line_per_request_on_a_0600_socket()
    {
        string path = Path.Combine(_dir, "zramd.ctl");
        await using (ControlServer server = ControlServer.Start(path, new EchoHandler(), NullLogger.Instance))
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));

            ControlReply reply = await ControlClient.SendAsync(path, new ControlRequest("set", "zram0", "mem_limit", "1G"));
            Assert.True(reply.Ok);
            Assert.Equal("got set zram0 mem_limit=1G", reply.Text);

            ControlReply failed = await ControlClient.SendAsync(path, new ControlRequest("reset", "zram0", null, null));
            Assert.False(failed.Ok);
            Assert.Equal("reset failed: device busy", failed.Error);

            Assert.Equal("{\"ok\":false,\"error\":\"unknown request \\u0027format\\u0027\"}\n", RawExchange(path, "format zram0\n"u8.ToArray()));
            Assert.Contains("\"ok\":false", RawExchange(path, new byte[10000]), StringComparison.Ordinal);
            Assert.Equal("{\"ok\":true,\"text\":\"got status\"}\n", RawExchange(path, "status"u8.ToArray()));
        }

        Assert.False(File.Exists(path), "the socket file is removed on stop");
    }

    /// <summary>Reports whether its request was told to stop, once the test lets it finish.</summary>
    private sealed class GatedHandler : IControlHandler
    {
        public ManualResetEventSlim Running { get; } = new();

        public ManualResetEventSlim Go { get; } = new();

        public ControlReply Handle(ControlRequest request, CancellationToken stopping)
        {
            Running.Set();
            Go.Wait(TimeSpan.FromSeconds(30));
            return ControlReply.Success(stopping.IsCancellationRequested ? "told to stop" : "not told");
        }
    }

    /// <summary>The daemon's stop (BeginStop, first thing at SIGTERM): the request running is told to stop and still
    /// answered, and no request is taken from then on (verbs sent around SIGTERM used to run in full first: 74 s).</summary>
    [Fact]
    public async Task Begin_stop_tells_the_running_request_to_stop_and_takes_no_other()
    {
        string path = Path.Combine(_dir, "zramd.ctl");
        var handler = new GatedHandler();
        ControlServer server = ControlServer.Start(path, handler, NullLogger.Instance);
        Task<ControlReply> running = ControlClient.SendAsync(path, new ControlRequest("recompress", "zram0", null, null));
        Assert.True(handler.Running.Wait(TimeSpan.FromSeconds(30)));

        server.BeginStop();
        handler.Running.Reset();
        Task<ControlReply> late = ControlClient.SendAsync(path, new ControlRequest("reset", "zram0", null, null));
        await Task.Delay(300);
        handler.Go.Set();
        Assert.Equal("told to stop", (await running).Text);
        await server.DisposeAsync();
        ControlReply? lateReply = null;
        try
        {
            lateReply = await late;
        }
#pragma warning disable CA1031 // However the closed socket shows (reset, end of file), the request got no answer.
        catch (Exception)
#pragma warning restore CA1031
        {
        }

        Assert.False(lateReply?.Ok == true, "a request sent after the stop began was answered");
        Assert.False(handler.Running.IsSet, "a request was taken after the stop began");
    }

    /// <summary>Takes longer than the server's client timeout, as a writeback can on a loaded machine.</summary>
    private sealed class SlowHandler(TimeSpan delay) : IControlHandler
    {
        public ControlReply Handle(ControlRequest request, CancellationToken stopping)
        {
            Thread.Sleep(delay);
            return ControlReply.Success($"done {request}");
        }
    }

    [Fact]
    public async Task A_request_whose_handler_outlasts_the_client_timeout_is_still_answered_and_a_silent_client_is_dropped()
    {
        string path = Path.Combine(_dir, "zramd.ctl");
        // 2 s: the client's line must arrive within it even when the test host's thread pool is busy (500 ms once may not).
        TimeSpan clientTimeout = TimeSpan.FromSeconds(2);
        await using ControlServer server = ControlServer.Start(path, new SlowHandler(clientTimeout * 3), NullLogger.Instance, clientTimeout);

        ControlReply reply = await ControlClient.SendAsync(path, new ControlRequest("writeback", "zram0", "idle", null));
        Assert.True(reply.Ok, reply.Error);
        Assert.Equal("done writeback zram0 type=idle", reply.Text);

        // The timeout still bounds the client: one that never sends its line is closed without an answer.
        using var silent = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        silent.Connect(new UnixDomainSocketEndPoint(path));
        silent.ReceiveTimeout = 60_000;
        Assert.Equal(0, silent.Receive(new byte[64]));
    }

    [Fact]
    public async Task Replaces_a_stale_socket_but_refuses_a_live_one_or_another_file()
    {
        string path = Path.Combine(_dir, "zramd.ctl");
        // A crashed daemon's socket: bound, never unlinked (.NET unlinks on dispose, so use another process).
        using (var stale = System.Diagnostics.Process.Start("python3", ["-c", "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", path]))
        {
            stale.WaitForExit();
        }

        Assert.True(File.Exists(path));
        await using ControlServer server = ControlServer.Start(path, new EchoHandler(), NullLogger.Instance);
        Assert.True((await ControlClient.SendAsync(path, new ControlRequest("status", null, null, null))).Ok);

        var live = Assert.Throws<IOException>(() => ControlServer.Start(path, new EchoHandler(), NullLogger.Instance));
        Assert.Contains("in use by a running zramd", live.Message, StringComparison.Ordinal);

        string regular = Path.Combine(_dir, "notes.txt");
        File.WriteAllText(regular, "keep me");
        var notSocket = Assert.Throws<IOException>(() => ControlServer.Start(regular, new EchoHandler(), NullLogger.Instance));
        Assert.Contains("is not a socket", notSocket.Message, StringComparison.Ordinal);
        Assert.Equal("keep me", File.ReadAllText(regular));
    }

    /// <summary>A daemon whose control socket file was removed, and a second one started at the path since: the first
    /// one's stop leaves the second one's socket (the runtime's Socket.Dispose deleted it by path).</summary>
    [Fact]
    public async Task Stopping_deletes_only_the_socket_file_it_bound()
    {
        string path = Path.Combine(_dir, "zramd.ctl");
        ControlServer first = ControlServer.Start(path, new EchoHandler(), NullLogger.Instance);
        File.Delete(path);
        await using ControlServer second = ControlServer.Start(path, new EchoHandler(), NullLogger.Instance);
        await first.DisposeAsync();
        Assert.True(File.Exists(path), "the first server deleted the second one's socket file");
        Assert.True((await ControlClient.SendAsync(path, new ControlRequest("status", null, null, null))).Ok);
        await second.DisposeAsync();
        Assert.False(File.Exists(path), "the server removes its own socket file");
    }
}
