using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Protocol;
using Nbd.Tests.Devices;
using Nbd.Tests.Sessions;

namespace Nbd.Tests.Interop;

/// <summary>A real <see cref="NbdServer"/> on a Unix socket in a fresh temp directory, serving in-memory devices.</summary>
public sealed class TestServer : IAsyncDisposable
{
    private readonly CancellationTokenSource _cancel = new();
    private readonly NbdListener _listener;
    private readonly Task _serving;
    private NbdListener? _tcpListener;
    private Task? _tcpServing;

    public TestServer(NbdServerOptions? options = null, params NbdExport[] exports)
    {
        Directory = Path.Combine(Path.GetTempPath(), "nbd-test-" + Guid.NewGuid().ToString("N")[..12]);
        System.IO.Directory.CreateDirectory(Directory);
        SocketPath = Path.Combine(Directory, "nbd.sock");
        Server = new NbdServer(options ?? new NbdServerOptions(), NullLoggerFactory.Instance);
        if (exports.Length == 0)
        {
            exports = [new NbdExport("mem", "in-memory test device", new MemoryBlockDevice(16 << 20))];
        }

        foreach (NbdExport export in exports)
        {
            Server.AddExport(export);
        }

        _listener = NbdListener.BindUnix(SocketPath);
        _serving = Server.ServeAsync(_listener, _cancel.Token);
    }

    public NbdServer Server { get; }

    public string Directory { get; }

    public string SocketPath { get; }

    public MemoryBlockDevice Device(int index = 0) => (MemoryBlockDevice)Server.SnapshotExports()[index].Device;

    /// <summary>A raw client connected and past the handshake: GO on <paramref name="export"/>, simple replies.</summary>
    public async Task<RawClient> ConnectRawAsync(string export = "mem")
    {
        RawClient client = await RawClient.ConnectAsync(SocketPath);
        await client.StartAsync();
        Assert.Equal(OptionReplyType.Ack, (await client.GoAsync(export)).Final);
        return client;
    }

    /// <summary>libnbd URI of an export on this server.</summary>
    public string Uri(string export = "mem") => $"nbd+unix:///{export}?socket={SocketPath}";

    /// <summary>Also serves on TCP 127.0.0.1 (an ephemeral port), which is returned.</summary>
    public int ListenTcp()
    {
        _tcpListener = NbdListener.BindTcp(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        _tcpServing = Server.ServeAsync(_tcpListener, _cancel.Token);
        return ((System.Net.IPEndPoint)_tcpListener.LocalEndPoint!).Port;
    }

    public async ValueTask DisposeAsync()
    {
        await _cancel.CancelAsync();
        await Server.StopAsync(TimeSpan.FromSeconds(2));
        await _serving;
        if (_tcpServing is not null)
        {
            await _tcpServing;
        }

        _tcpListener?.Dispose();
        _listener.Dispose();
        await Server.DisposeAsync();
        _cancel.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
