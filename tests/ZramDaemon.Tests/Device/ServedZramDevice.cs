using Microsoft.Extensions.Logging.Abstractions;
using Nbd;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>A <see cref="ZramDevice"/> served by the real <see cref="NbdServer"/> on a Unix socket, in-process:
/// what the NBD-level device and fault tests start and tear down.</summary>
internal sealed class ServedZramDevice : IAsyncDisposable
{
    private readonly CancellationTokenSource _cancel = new();
    private readonly NbdListener _listener;
    private readonly Task _serving;

    public ServedZramDevice(ZramDeviceOptions options, string socketPath, NbdServerOptions? serverOptions = null)
    {
        Device = new ZramDevice(options, NullLoggerFactory.Instance);
        Server = new NbdServer(serverOptions ?? new NbdServerOptions(), NullLoggerFactory.Instance);
        Server.AddExport(new NbdExport(options.Name, "test device", Device));
        _listener = NbdListener.BindUnix(socketPath);
        _serving = Server.ServeAsync(_listener, _cancel.Token);
    }

    public ZramDevice Device { get; }

    public NbdServer Server { get; }

    public async ValueTask DisposeAsync()
    {
        await _cancel.CancelAsync();
        await Server.StopAsync(TimeSpan.FromSeconds(2));
        await _serving;
        _listener.Dispose();
        await Server.DisposeAsync();
        Device.Dispose();
        _cancel.Dispose();
    }
}
