using Microsoft.Extensions.Logging.Abstractions;
using Nbd;
using Nbd.Devices;
using ZramDaemon.Control;
using ZramDaemon.Device;
using ZramDaemon.Hosting;
using ZramDaemon.Tests.Device;
using ZramDaemon.Tests.Review;

namespace ZramDaemon.Tests.Control;

/// <summary>A reset asked for once the daemon's stop began is refused, not run: everything goes at the stop anyway,
/// and a reset of many written-back pages held a stop for a minute (a probe's burst of resets at SIGTERM).</summary>
public sealed class DeviceRegistryStopTests
{
    [Fact]
    public async Task A_reset_during_the_stop_is_refused_and_drops_nothing()
    {
        using ZramDevice device = RevFControlVerbTests.Create();
        byte[] page = DevicePages.TextPage(3);
        Assert.Equal(NbdError.None, device.Write(0, page, fua: false));
        await using var server = new NbdServer(new NbdServerOptions(), NullLoggerFactory.Instance);
        var registry = new DeviceRegistry([device], server);

        ControlReply reply = registry.Handle(new ControlRequest("reset", "zram0", null, null), new CancellationToken(canceled: true));
        Assert.False(reply.Ok);
        Assert.Equal("zramd is stopping", reply.Error);
        var back = new byte[ZramDevice.PageSize];
        Assert.Equal(NbdError.None, device.Read(0, back));
        Assert.Equal(page, back);

        Assert.True(registry.Handle(new ControlRequest("reset", "zram0", null, null), CancellationToken.None).Ok);
        Assert.Equal(0, device.GetStats().OrigDataSize);
    }
}
