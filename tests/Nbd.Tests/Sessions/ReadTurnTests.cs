using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Tests.Devices;
using Nbd.Tests.Interop;

namespace Nbd.Tests.Sessions;

/// <summary>
/// Who reads next. A client at queue depth 1 (each request sent only after the last reply) is served by one
/// thread, which keeps the read turn while it runs each request, as long as a CPU is free: waking another only to
/// block it in recv would cost two context switches a request. The turn moves only when the watchdog finds a kept request running long
/// and wakes another thread, which then reads what the client sent meanwhile. Pipelined requests are still
/// spread over the threads (ConcurrentConnectionsTests holds all four in the device at once).
/// </summary>
public sealed class ReadTurnTests
{
    private const int Block = 4096;
    private const int Requests = 400;

    [Theory]
    [InlineData(0, true)]
    [InlineData(NbdServerOptions.DefaultBusyPollMicroseconds, true)]
    [InlineData(NbdServerOptions.DefaultBusyPollMicroseconds, false)]
    public async Task A_client_at_queue_depth_1_is_served_by_one_thread_that_keeps_the_read_turn_while_a_cpu_is_free(int busyPoll, bool cpuFree)
    {
        int asked = 0;
        var device = new ThreadRecordingDevice(new MemoryBlockDevice(16 << 20), Requests);
        await using var server = new TestServer(
            new NbdServerOptions
            {
                WorkerThreadsPerConnection = 4,
                // Long enough that a reader preempted on a loaded machine (routinely 5 ms on two busy CPUs) is not
                // taken for a request waiting in the device: this test counts kicks, which only move the turn.
                ReadTurnWatchdogInterval = TimeSpan.FromMilliseconds(250),
                BusyPollMicroseconds = busyPoll,
                BusyPollGate = () => true,
                KeepReadTurnGate = () =>
                {
                    Interlocked.Increment(ref asked);
                    return cpuFree;
                },
            },
            new NbdExport("mem", "recording", device));
        using RawClient client = await server.ConnectRawAsync();

        byte[] payload = new byte[Block];
        for (int i = 0; i < Requests; i++)
        {
            payload[0] = (byte)i;
            await client.SendRequestAsync(CommandType.Write, (ulong)i, (ulong)(i % 64) * Block, Block, 0, payload);
            var reply = (await client.ReadSimpleReplyAsync())!.Value;
            Assert.Equal(NbdError.None, reply.Error);
            Assert.Equal((ulong)i, reply.Handle);
        }

        int[] threads = device.Threads;
        Assert.Equal(Requests, threads.Length);
        Assert.True(Volatile.Read(ref asked) >= Requests, $"the gate was asked {asked} times for {Requests} requests");
        long kicks = server.Server.ReadTurnKicks;
        if (!cpuFree)
        {
            // No CPU free: the turn is handed on at every request, as before, and no turn is kept to watch.
            Assert.Equal(0, kicks);
            return;
        }

        // The first few may move while the other threads start and go to sleep; after that only the watchdog
        // moves it, when a request (preempted on a loaded machine) ran an interval or more, and a kick may move it
        // twice: the woken thread reads the next request, and the stalled one, back on a CPU, takes the free turn
        // (or sees the reply still in flight and hands the turn on). With a wake-up per request it moved on about
        // half of the requests.
        int changes = 0;
        for (int i = 1; i < threads.Length; i++)
        {
            changes += threads[i] != threads[i - 1] ? 1 : 0;
        }

        Assert.True(kicks <= Requests / 4, $"the watchdog woke a reader {kicks} times in {Requests} requests");
        Assert.True(changes <= 10 + (2 * kicks), $"the read turn changed threads {changes} times in {Requests} requests at queue depth 1 ({kicks} kicks)");
    }

    [Fact]
    public async Task A_request_sent_while_a_kept_request_waits_in_the_device_is_read_and_answered()
    {
        // Each attempt answers the write while the read waits; at least one must have needed the watchdog (an
        // attempt can start with the turn held by a thread that saw the last reply still in flight, and then
        // hands on as usual; the pause before the read makes that rare).
        long kicks = 0;
        for (int attempt = 0; attempt < 3 && kicks == 0; attempt++)
        {
            kicks = await WriteWhileAKeptReadWaits();
        }

        Assert.True(kicks >= 1, "every attempt was answered without the watchdog waking a reader");
    }

    [Fact]
    public async Task A_request_right_behind_a_large_writes_payload_is_read_while_the_write_waits_in_the_device()
    {
        // The receive that ends a large write's payload goes straight into the write's buffer and stops at the
        // payload's end, so it cannot tell whether the client sent more: the socket must be asked, and another thread
        // then reads the request behind it. Were that receive taken for one that emptied the socket (as a short one into
        // the receive buffer is), the write's thread would keep the turn, and the read would wait for the watchdog.
        const int Large = 64 * 1024;
        const int Tail = 16 * 1024;
        var gated = new GatedDevice(new MemoryBlockDevice(16 << 20), writes: true);
        await using var server = new TestServer(new NbdServerOptions { WorkerThreadsPerConnection = 4, KeepReadTurnGate = () => true }, new NbdExport("mem", "gated", gated));
        using RawClient client = await server.ConnectRawAsync();

        // The write's header and its payload but the last 16 KiB; once the server waits for those, they go with a
        // read's header in one send, one buffer in the socket: the header is there when the payload's end is received.
        byte[] write = new byte[RequestHeader.Size + Large];
        new RequestHeader(NbdMagic.Request, 0, CommandType.Write, 1, 0, Large).Write(write);
        write[^1] = 0x5a;
        await client.SendAsync(write[..^Tail]);
        await Task.Delay(100);
        byte[] rest = new byte[Tail + RequestHeader.Size];
        write.AsSpan(write.Length - Tail).CopyTo(rest);
        new RequestHeader(NbdMagic.Request, 0, CommandType.Read, 2, Large, Block).Write(rest.AsSpan(Tail));
        await client.SendAsync(rest);

        var read = (await client.ReadSimpleReplyAsync(Block).WaitAsync(Poll.Patience))!.Value;
        Assert.Equal(2UL, read.Handle);
        Assert.Equal(NbdError.None, read.Error);
        await gated.WaitUntilWaitingAsync(1); // the read's reply can come before the write's thread reaches the gate
        Assert.Equal(0, server.Server.ReadTurnKicks);

        gated.Open();
        var written = (await client.ReadSimpleReplyAsync().WaitAsync(Poll.Patience))!.Value;
        Assert.Equal(1UL, written.Handle);
        Assert.Equal(NbdError.None, written.Error);
        await client.SendRequestAsync(CommandType.Read, 3, Large - Block, Block);
        var back = (await client.ReadSimpleReplyAsync(Block).WaitAsync(Poll.Patience))!.Value;
        Assert.Equal(0x5a, back.Data[^1]);
    }

    /// <summary>Returns the watchdog's kicks.</summary>
    private static async Task<long> WriteWhileAKeptReadWaits()
    {
        var gated = new GatedDevice(new MemoryBlockDevice(16 << 20));
        await using var server = new TestServer(new NbdServerOptions { WorkerThreadsPerConnection = 4, KeepReadTurnGate = () => true }, new NbdExport("mem", "gated", gated));
        using RawClient client = await server.ConnectRawAsync();

        // Depth-1 writes first, so that the connection's other threads have started and gone to sleep.
        byte[] payload = new byte[Block];
        for (int i = 0; i < 50; i++)
        {
            await client.SendRequestAsync(CommandType.Write, 100, Block, Block, 0, payload);
            Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync().WaitAsync(Poll.Patience))!.Value.Error);
        }

        // Alone in flight with nothing behind it: its thread keeps the turn, and then waits at the gate.
        await Task.Delay(100);
        await client.SendRequestAsync(CommandType.Read, 1, 0, Block);
        await gated.WaitUntilWaitingAsync(1);

        // Sent only now, so no thread saw it coming: the watchdog has to wake one to read it.
        payload[7] = 7;
        await client.SendRequestAsync(CommandType.Write, 2, Block, Block, 0, payload);
        var write = (await client.ReadSimpleReplyAsync().WaitAsync(Poll.Patience))!.Value;
        Assert.Equal(2UL, write.Handle);
        Assert.Equal(NbdError.None, write.Error);
        Assert.Equal(1, gated.Waiting);
        long kicks = server.Server.ReadTurnKicks;

        gated.Open();
        var read = (await client.ReadSimpleReplyAsync(Block).WaitAsync(Poll.Patience))!.Value;
        Assert.Equal(1UL, read.Handle);
        Assert.Equal(NbdError.None, read.Error);
        return kicks;
    }
}
