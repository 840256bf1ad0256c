using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Tests.Devices;
using Nbd.Tests.Interop;

namespace Nbd.Tests.Sessions;

/// <summary>
/// Busy polling before recv (<see cref="NbdServerOptions.BusyPollMicroseconds"/>): the reader asks whether a CPU
/// is free before each poll, never when polling is off, and requests are served whole and right whether it polls
/// (the gate forced open, 1 ms polls: every request of a depth-1 client arrives during one) or not. A client that
/// goes away while the reader polls ends only its own connection.
/// </summary>
public sealed class BusyPollTests
{
    private const int Block = 4096;
    private const int Requests = 300;

    [Theory]
    [InlineData(NbdServerOptions.BusyPollMicrosecondsCeiling, true)]
    [InlineData(NbdServerOptions.BusyPollMicrosecondsCeiling, false)]
    [InlineData(0, true)]
    public async Task A_depth_1_client_is_served_right_and_the_gate_is_asked_only_when_polling_is_on(int busyPoll, bool cpuFree)
    {
        int asked = 0;
        await using var server = new TestServer(new NbdServerOptions
        {
            BusyPollMicroseconds = busyPoll,
            BusyPollGate = () =>
            {
                Interlocked.Increment(ref asked);
                return cpuFree;
            },
        });
        using RawClient client = await server.ConnectRawAsync();

        byte[] payload = new byte[Block];
        for (int i = 0; i < Requests; i++)
        {
            payload[0] = (byte)i;
            payload[Block - 1] = (byte)(i * 7);
            await client.SendRequestAsync(CommandType.Write, (ulong)i, (ulong)(i % 64) * Block, Block, 0, payload);
            Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync())!.Value.Error);
            await client.SendRequestAsync(CommandType.Read, (ulong)i, (ulong)(i % 64) * Block, Block);
            var read = (await client.ReadSimpleReplyAsync(Block))!.Value;
            Assert.Equal(NbdError.None, read.Error);
            Assert.Equal(payload, read.Data);
        }

        // Each request was read with nothing buffered before it (the client waited for every reply).
        if (busyPoll == 0)
        {
            Assert.Equal(0, Volatile.Read(ref asked));
        }
        else
        {
            Assert.True(Volatile.Read(ref asked) >= 2 * Requests, $"the gate was asked {asked} times for {2 * Requests} requests");
        }
    }

    [Fact]
    public async Task A_client_that_disconnects_while_the_reader_polls_ends_only_its_own_connection()
    {
        await using var server = new TestServer(new NbdServerOptions
        {
            BusyPollMicroseconds = NbdServerOptions.BusyPollMicrosecondsCeiling,
            BusyPollGate = () => true,
        });
        for (int round = 0; round < 20; round++)
        {
            using RawClient gone = await server.ConnectRawAsync();
            await gone.SendRequestAsync(CommandType.Flush, 1, 0, 0);
            Assert.Equal(NbdError.None, (await gone.ReadSimpleReplyAsync())!.Value.Error);
            gone.Socket.Shutdown(System.Net.Sockets.SocketShutdown.Both);
        }

        using RawClient still = await server.ConnectRawAsync();
        await still.SendRequestAsync(CommandType.Flush, 2, 0, 0);
        Assert.Equal(NbdError.None, (await still.ReadSimpleReplyAsync())!.Value.Error);
    }
}
