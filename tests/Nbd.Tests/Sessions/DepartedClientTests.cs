using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Tests.Devices;
using Nbd.Tests.Interop;

namespace Nbd.Tests.Sessions;

/// <summary>What a connection does once its client has gone away without NBD_CMD_DISC.</summary>
public sealed class DepartedClientTests
{
    /// <summary>
    /// A client pipelines many cheap-to-send, costly-to-serve requests (32-byte READ headers) and goes away. Once the
    /// first reply cannot be sent the session is broken (socket shut down); the requests still buffered (128 KiB of
    /// receive buffer is 4096 headers, plus what the socket holds) must not be run: nobody will read their replies,
    /// and no back-pressure applies to work whose replies are dropped. Found by review: on zramd, 7000 READs of
    /// 32 MiB sent and the client closed at once kept the connection's 4 threads busy for minutes, the connection
    /// still counted (MaxConnections, and `zramd reset` refused: "has 1 client(s) connected").
    /// </summary>
    [Fact]
    public async Task Requests_left_buffered_by_a_client_that_went_away_are_not_run()
    {
        const int requests = 2000;
        var gated = new GatedDevice(new MemoryBlockDevice(16 << 20));
        await using var server = new TestServer(new NbdServerOptions { WorkerThreadsPerConnection = 4 }, new NbdExport("mem", "gated", gated));
        RawClient client = await server.ConnectRawAsync();

        var bytes = new byte[requests * RequestHeader.Size];
        for (int i = 0; i < requests; i++)
        {
            new RequestHeader(NbdMagic.Request, 0, CommandType.Read, (ulong)i, 0, 4096).Write(bytes.AsSpan(i * RequestHeader.Size));
        }

        await client.SendAsync(bytes);

        // Every thread of the connection holds a read at the gate; the client leaves without reading a reply.
        await gated.WaitUntilWaitingAsync(4);
        client.Dispose();
        gated.Open();

        Assert.True(await Poll.UntilAsync(() => server.Server.ConnectionCount == 0), "the connection never ended");
        Assert.True(gated.Reached < 100,
            $"{gated.Reached} of {requests} READs were run against the device for a client that had gone away");
    }
}
