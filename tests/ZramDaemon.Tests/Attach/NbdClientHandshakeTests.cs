using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd;
using Nbd.Protocol;
using ZramDaemon.Attach;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Attach;

/// <summary>The userspace half of `zramd attach` against the real NBD server serving a real ZramDevice, over
/// a Unix socket: what the kernel is handed afterwards must be a socket in the transmission phase.</summary>
public sealed class NbdClientHandshakeTests : IAsyncLifetime
{
    private const long DiskSize = 64L << 20;
    private readonly string _socketPath = Path.Combine(Path.GetTempPath(), $"zramd-hs-{Guid.NewGuid():N}.sock");
    private ZramDevice _device = null!;
    private NbdServer _server = null!;
    private NbdListener _listener = null!;
    private CancellationTokenSource _stop = null!;
    private Task _serving = Task.CompletedTask;

    public async Task InitializeAsync()
    {
        _device = new ZramDevice(new ZramDeviceOptions { Name = "zram0", DiskSize = DiskSize }, NullLoggerFactory.Instance);
        _server = new NbdServer(new NbdServerOptions(), NullLoggerFactory.Instance);
        _server.AddExport(new NbdExport("zram0", "test", _device));
        _listener = NbdListener.BindUnix(_socketPath);
        _stop = new CancellationTokenSource();
        _serving = _server.ServeAsync(_listener, _stop.Token);
        await Task.Yield();
    }

    public async Task DisposeAsync()
    {
        await _stop.CancelAsync();
        await _server.StopAsync(TimeSpan.FromSeconds(5));
        await _serving;
        _listener.Dispose();
        _device.Dispose();
        _stop.Dispose();
        File.Delete(_socketPath);
    }

    [Fact]
    public void Go_returns_the_size_and_flags_and_leaves_the_socket_in_transmission()
    {
        using Socket socket = Connect();
        NbdExportInfo info = NbdClientHandshake.Negotiate(socket, "zram0");

        Assert.Equal(DiskSize, info.Size);
        var flags = (TransmissionFlags)info.TransmissionFlags;
        Assert.True(flags.HasFlag(TransmissionFlags.HasFlags));
        Assert.True(flags.HasFlag(TransmissionFlags.SendTrim), flags.ToString());
        Assert.True(flags.HasFlag(TransmissionFlags.SendFlush), flags.ToString());
        Assert.False(flags.HasFlag(TransmissionFlags.ReadOnly));
        Assert.Equal(4096, info.PreferredBlockSize);

        // Transmission phase: NBD_CMD_READ of 4 KiB at 0 gets a simple reply (no structured replies were asked for).
        Span<byte> request = stackalloc byte[28];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(request, NbdMagic.Request);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(request[6..], (ushort)CommandType.Read);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(request[8..], 0x1234);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(request[24..], 4096);
        socket.Send(request);
        byte[] reply = new byte[16 + 4096];
        int got = 0;
        while (got < reply.Length)
        {
            int n = socket.Receive(reply.AsSpan(got));
            Assert.NotEqual(0, n);
            got += n;
        }

        Assert.Equal(NbdMagic.SimpleReply, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(reply));
        Assert.Equal(0u, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4)));
        Assert.Equal(0x1234ul, System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(reply.AsSpan(8)));
        Assert.All(reply[16..], b => Assert.Equal(0, b));
    }

    [Fact]
    public void An_unknown_export_is_refused_with_the_servers_reason()
    {
        using Socket socket = Connect();
        NbdAttachException e = Assert.Throws<NbdAttachException>(() => NbdClientHandshake.Negotiate(socket, "nosuch"));
        Assert.Contains("nosuch", e.Message, StringComparison.Ordinal);
        Assert.Contains("NBD_REP_ERR", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Attach_names_a_bad_device_path_before_touching_the_kernel()
    {
        Socket socket = Connect();
        NbdAttachException e = Assert.Throws<NbdAttachException>(() => KernelNbdAttachment.Attach(socket, "zram0", "/dev/sda"));
        Assert.Contains("/dev/nbdN", e.Message, StringComparison.Ordinal);
    }

    private Socket Connect()
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(_socketPath));
        return socket;
    }
}
