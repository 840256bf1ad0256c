using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Tests.Devices;
using Nbd.Tests.Interop;

namespace Nbd.Tests.Transport;

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class NbdListenerTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("nbd-listener-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Theory]
    [InlineData(0x1B0, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite)]
    [InlineData(0x180, UnixFileMode.UserRead | UnixFileMode.UserWrite)]
    public void Unix_socket_file_gets_the_requested_mode(int mode, UnixFileMode expected)
    {
        string path = Path.Combine(_directory, "s.sock");
        using var listener = NbdListener.BindUnix(path, mode);
        Assert.Equal("unix:" + path, listener.Description);
        Assert.Equal(expected, File.GetUnixFileMode(path));
    }

    /// <summary>The group is a number the caller looked up: the listener looks no name up (zramd's loader resolves
    /// socket-group once, through NSS). Before, BindUnix took a name and called getgrnam a second time.</summary>
    [Fact]
    public void Group_is_set_by_number_and_chowns_no_change_is_refused()
    {
        string path = Path.Combine(_directory, "g.sock");
        using (NbdListener.BindUnix(path, groupId: 6))
        {
            using var stat = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%g", path]) { RedirectStandardOutput = true })!;
            Assert.Equal("6", stat.StandardOutput.ReadToEnd().Trim());
            stat.WaitForExit();
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => NbdListener.BindUnix(path, groupId: uint.MaxValue));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void A_stale_socket_file_is_replaced_and_a_live_one_is_refused()
    {
        string path = Path.Combine(_directory, "stale.sock");
        using (var leftover = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            // Bound, never listening: what a crash leaves (Socket.Bind's file the runtime would delete at dispose).
            UnixSocketFile.Bind(leftover, path);
        }

        Assert.True(File.Exists(path));
        using var listener = NbdListener.BindUnix(path);
        Assert.Throws<IOException>(() => NbdListener.BindUnix(path));
        listener.Dispose();
        Assert.False(File.Exists(path), "the listener removes its socket file");
    }

    /// <summary>A listener whose file was removed (by tmpfiles, an admin) and a second server bound at the path since:
    /// the first one's end leaves the second one's socket. The runtime's Socket.Dispose deleted it by path, and the
    /// second server's clients got ENOENT while it ran on.</summary>
    [Fact]
    public void Disposing_deletes_only_the_socket_file_it_bound()
    {
        string path = Path.Combine(_directory, "shared.sock");
        var first = NbdListener.BindUnix(path);
        File.Delete(path);
        using var second = NbdListener.BindUnix(path);
        first.Dispose();
        Assert.True(File.Exists(path), "the first listener deleted the second one's socket file");
        using (var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            client.Connect(new UnixDomainSocketEndPoint(path));
        }

        second.Dispose();
        Assert.False(File.Exists(path), "the listener removes its own socket file");
    }

    /// <summary>sun_path holds 107 bytes and a NUL: a longer path is refused before anything is made.</summary>
    [Fact]
    public void A_path_longer_than_a_socket_address_holds_is_refused()
    {
        string prefix = _directory + "/";
        string longest = prefix + new string('s', 107 - prefix.Length);
        using (var listener = NbdListener.BindUnix(longest))
        {
            Assert.True(File.Exists(longest));
        }

        string tooLong = longest + "s";
        var error = Assert.Throws<ArgumentException>(() => NbdListener.BindUnix(tooLong));
        Assert.Contains("at most 107 bytes", error.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(tooLong));
    }

    [Fact]
    public void A_path_that_holds_another_kind_of_file_is_refused_and_kept()
    {
        string path = Path.Combine(_directory, "notes.txt");
        File.WriteAllText(path, "keep me");
        var error = Assert.Throws<IOException>(() => NbdListener.BindUnix(path));
        Assert.Contains("is not a socket", error.Message, StringComparison.Ordinal);
        Assert.Equal("keep me", File.ReadAllText(path));
    }

    [Fact]
    public async Task Tcp_listener_serves_with_no_delay_on_loopback()
    {
        await using var server = new NbdServer(new NbdServerOptions(), NullLoggerFactory.Instance);
        server.AddExport(new NbdExport("mem", "tcp", new MemoryBlockDevice(1 << 20)));
        using var listener = NbdListener.BindTcp(new IPEndPoint(IPAddress.Loopback, 0));
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        Assert.Equal($"tcp:127.0.0.1:{port}", listener.Description);
        using var cancel = new CancellationTokenSource();
        Task serving = server.ServeAsync(listener, cancel.Token);

        Assert.Equal("1048576", (await Tool.RunAsync("nbdinfo", ["--size", $"nbd://127.0.0.1:{port}/mem"])).EnsureSuccess().Stdout.Trim());

        await cancel.CancelAsync();
        await serving.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void Systemd_activation_is_ignored_when_not_meant_for_this_process()
    {
        Environment.SetEnvironmentVariable("LISTEN_PID", "1");
        Environment.SetEnvironmentVariable("LISTEN_FDS", "1");
        try
        {
            Assert.Empty(NbdListener.FromSystemd());
        }
        finally
        {
            Environment.SetEnvironmentVariable("LISTEN_PID", null);
            Environment.SetEnvironmentVariable("LISTEN_FDS", null);
        }
    }

    /// <summary>Clears FD_CLOEXEC, which .NET sets on every descriptor it opens, as systemd does on what it passes:
    /// the descriptor then stands for one inherited across exec.</summary>
    private static int AsInherited(int fd)
    {
        Assert.Equal(0, Nbd.Native.Libc.Fcntl(fd, 2 /* F_SETFD */, 0));
        return fd;
    }

    [Fact]
    public void Inherited_descriptors_that_are_not_listening_stream_sockets_are_refused_and_left_open()
    {
        using var datagram = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        datagram.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        int fd = AsInherited((int)datagram.SafeHandle.DangerousGetHandle());
        var error = Assert.Throws<IOException>(() => NbdListener.FromInheritedDescriptors(fd, 1, ["zramd.socket"]));
        Assert.Equal($"fd {fd} (systemd zramd.socket) is a datagram socket (ListenDatagram=): zramd needs a listening stream socket (ListenStream=)", error.Message);
        Assert.Equal(0, datagram.Available); // still open: nothing was taken

        using var unbound = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        error = Assert.Throws<IOException>(() => NbdListener.FromInheritedDescriptors(AsInherited((int)unbound.SafeHandle.DangerousGetHandle()), 1, []));
        Assert.Contains("not listening", error.Message, StringComparison.Ordinal);

        using Microsoft.Win32.SafeHandles.SafeFileHandle file = File.OpenHandle(Path.Combine(_directory, "file"), FileMode.Create, FileAccess.ReadWrite);
        error = Assert.Throws<IOException>(() => NbdListener.FromInheritedDescriptors(AsInherited((int)file.DangerousGetHandle()), 1, []));
        Assert.Contains("is not a socket", error.Message, StringComparison.Ordinal);

        error = Assert.Throws<IOException>(() => NbdListener.FromInheritedDescriptors(1 << 30, 1, []));
        Assert.Equal($"LISTEN_FDS=1 names fd {1 << 30}, but fd {1 << 30} is not open: LISTEN_FDS counts more descriptors than were passed", error.Message);
    }

    /// <summary>A wrong LISTEN_FDS reaches past the descriptors passed to the process's own, which are close-on-exec:
    /// the error blames LISTEN_FDS, even where that descriptor is a listening socket (the runtime's diagnostics socket
    /// is one), which is not taken.</summary>
    [Fact]
    public void A_close_on_exec_descriptor_is_not_one_systemd_passed_and_the_error_blames_listen_fds()
    {
        using var own = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        own.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        own.Listen(1);
        int fd = (int)own.SafeHandle.DangerousGetHandle();
        var error = Assert.Throws<IOException>(() => NbdListener.FromInheritedDescriptors(fd, 1, ["zramd.socket"]));
        Assert.Equal($"LISTEN_FDS=1 names fd {fd}, but fd {fd} was not passed: it is close-on-exec, so one of zramd's own (the runtime opened it); LISTEN_FDS counts more descriptors than were passed", error.Message);
        Assert.True(own.IsBound); // still ours: nothing was taken
    }

    [Fact]
    public async Task Inherited_listening_socket_is_served()
    {
        string path = Path.Combine(_directory, "inherited.sock");
        var original = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        original.Bind(new UnixDomainSocketEndPoint(path));
        original.Listen(8);
        int fd = AsInherited((int)original.SafeHandle.DangerousGetHandle());
        original.SafeHandle.SetHandleAsInvalid(); // the listener takes the descriptor over, as from systemd
        // The Socket that bound the path deletes its file when disposed, finalizer included: a GC during the test
        // took the path away from under the listener (nbdinfo: connect: No such file or directory).
        GC.SuppressFinalize(original);

        IReadOnlyList<NbdListener> listeners = NbdListener.FromInheritedDescriptors(fd, 1, ["zramd.socket"]);
        using NbdListener listener = Assert.Single(listeners);
        Assert.Equal($"unix:{path} (systemd zramd.socket)", listener.Description);

        await using var server = new NbdServer(new NbdServerOptions(), NullLoggerFactory.Instance);
        server.AddExport(new NbdExport("mem", "inherited", new MemoryBlockDevice(1 << 20)));
        using var cancel = new CancellationTokenSource();
        Task serving = server.ServeAsync(listener, cancel.Token);
        Assert.Equal("1048576", (await Tool.RunAsync("nbdinfo", ["--size", $"nbd+unix:///mem?socket={path}"])).EnsureSuccess().Stdout.Trim());
        await cancel.CancelAsync();
        await serving.WaitAsync(TimeSpan.FromSeconds(10));
    }
}
