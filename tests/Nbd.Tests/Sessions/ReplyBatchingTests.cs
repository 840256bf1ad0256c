using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Tests.Devices;
using Nbd.Tests.Interop;

namespace Nbd.Tests.Sessions;

/// <summary>
/// A reply finished while other requests of its connection are still running may be left queued for the thread
/// that finishes last, so that several replies go out in one send. None may be left there while the server waits
/// for the client: here three reads are held at the device's gate (three of the connection's four threads), and
/// every write behind them is finished by the fourth thread, which sees three requests still running and leaves
/// its reply queued. Only the reader's flush before it waits for input (or a full batch) sends them; without it
/// the client, which waits for those replies before sending more, would wait for the reads (the gate opens by
/// itself after 30 s; the client gives up after 10 s).
/// </summary>
public sealed class ReplyBatchingTests
{
    private const int HeldReads = NbdServerOptions.DefaultWorkerThreadsPerConnection - 1;

    [Fact]
    public async Task Replies_left_for_running_requests_are_sent_when_the_reader_waits_for_the_client()
    {
        var gated = new GatedDevice(new MemoryBlockDevice(1 << 20));
        await using var server = new TestServer(null, new NbdExport("mem", "gated", gated));
        using RawClient client = await server.ConnectRawAsync();
        await HoldReadsAsync(client, gated);

        // One at a time: each reply is left queued by the thread that wrote, and only its wait for the next request
        // sends it.
        byte[] payload = Enumerable.Repeat((byte)0x5A, 4096).ToArray();
        for (ulong handle = 100; handle < 103; handle++)
        {
            await client.SendRequestAsync(CommandType.Write, handle, 65536 + ((handle - 100) * 4096), 4096, 0, payload);
            var reply = (await client.ReadSimpleReplyAsync())!.Value;
            Assert.Equal((NbdError.None, handle), (reply.Error, reply.Handle));
            Assert.Equal(HeldReads, gated.Waiting);
        }

        gated.Open();
        await ReadRepliesAsync(client, HeldReads, 4096);
    }

    [Fact]
    public async Task A_pipelined_run_of_writes_behind_held_reads_is_answered_in_full()
    {
        // More writes than a batch holds (16), sent at once: some replies go out when a batch is full, the rest when
        // the reader runs out of requests; every one arrives once, while the reads are still held.
        const int Writes = 40;
        var gated = new GatedDevice(new MemoryBlockDevice(1 << 20));
        await using var server = new TestServer(null, new NbdExport("mem", "gated", gated));
        using RawClient client = await server.ConnectRawAsync();
        await HoldReadsAsync(client, gated);
        for (int i = 0; i < Writes; i++)
        {
            byte[] payload = Enumerable.Repeat((byte)(i + 1), 4096).ToArray();
            await client.SendRequestAsync(CommandType.Write, (ulong)(100 + i), (ulong)(16 + i) * 4096, 4096, 0, payload);
        }

        HashSet<ulong> handles = await ReadRepliesAsync(client, Writes, 0);
        Assert.Equal(Enumerable.Range(100, Writes).Select(i => (ulong)i).ToHashSet(), handles);
        Assert.Equal(HeldReads, gated.Waiting);

        gated.Open();
        await ReadRepliesAsync(client, HeldReads, 4096);
        for (int i = 0; i < Writes; i++)
        {
            await client.SendRequestAsync(CommandType.Read, (ulong)(200 + i), (ulong)(16 + i) * 4096, 4096);
            var read = (await client.ReadSimpleReplyAsync(4096))!.Value;
            Assert.Equal((NbdError.None, (ulong)(200 + i)), (read.Error, read.Handle));
            Assert.All(read.Data, b => Assert.Equal((byte)(i + 1), b));
        }
    }

    /// <summary>Sends <see cref="HeldReads"/> reads and waits until they all wait at the gate, so that the
    /// connection's last thread is the only one left to read and write.</summary>
    private static async Task HoldReadsAsync(RawClient client, GatedDevice gated)
    {
        for (int i = 0; i < HeldReads; i++)
        {
            await client.SendRequestAsync(CommandType.Read, (ulong)i, (ulong)i * 4096, 4096);
        }

        await gated.WaitUntilWaitingAsync(HeldReads);
    }

    private static async Task<HashSet<ulong>> ReadRepliesAsync(RawClient client, int count, int dataLength)
    {
        var handles = new HashSet<ulong>();
        for (int i = 0; i < count; i++)
        {
            var reply = (await client.ReadSimpleReplyAsync(dataLength))!.Value;
            Assert.Equal(NbdError.None, reply.Error);
            Assert.True(handles.Add(reply.Handle), $"handle {reply.Handle} answered twice");
        }

        return handles;
    }
}
