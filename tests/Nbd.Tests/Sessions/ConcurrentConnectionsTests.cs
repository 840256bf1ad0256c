using System.Buffers.Binary;
using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Tests.Devices;
using Nbd.Tests.Interop;

namespace Nbd.Tests.Sessions;

/// <summary>
/// Two connections at once, each with many requests in flight: every reply arrives exactly once, whole and
/// with the right data, whichever thread sends it (replies are queued and sent in batches by whoever holds the
/// connection's send turn, large reads go out directly), and one connection is served while the other has
/// every thread blocked in the device.
/// </summary>
public sealed class ConcurrentConnectionsTests
{
    private const int Block = 4096;
    private const int Blocks = 256;

    [Theory]
    [InlineData(4)]
    [InlineData(16)]
    public async Task Two_connections_pipelining_reads_writes_and_flushes_get_every_reply_whole_and_right(int threads)
    {
        // 16 threads fill the 64 KiB reply queue with 16 KiB reads, so the queue-full path runs as well.
        await using var server = new TestServer(new NbdServerOptions { WorkerThreadsPerConnection = threads });
        using RawClient first = await server.ConnectRawAsync();
        using RawClient second = await server.ConnectRawAsync();

        await Task.WhenAll(Exercise(first, region: 0), Exercise(second, region: 1));
    }

    [Fact]
    public async Task A_connection_is_served_while_another_has_every_thread_blocked_in_the_device()
    {
        var gated = new GatedDevice(new MemoryBlockDevice(16 << 20));
        await using var server = new TestServer(new NbdServerOptions { WorkerThreadsPerConnection = 4 }, new NbdExport("mem", "gated", gated));
        using RawClient blocked = await server.ConnectRawAsync();
        using RawClient other = await server.ConnectRawAsync();

        for (ulong i = 0; i < 4; i++)
        {
            await blocked.SendRequestAsync(CommandType.Read, i, i * Block, Block);
        }

        await gated.WaitUntilWaitingAsync(4);

        // The other connection's writes and flushes (not gated) are answered while those reads wait.
        byte[] payload = Pattern(7, 1);
        for (ulong i = 0; i < 64; i++)
        {
            await other.SendRequestAsync(CommandType.Write, 100 + i, (1 << 20) + (i * Block), Block, 0, payload);
            await other.SendRequestAsync(CommandType.Flush, 200 + i, 0, 0);
        }

        var answered = new HashSet<ulong>();
        for (int i = 0; i < 128; i++)
        {
            var reply = (await other.ReadSimpleReplyAsync())!.Value;
            Assert.Equal(NbdError.None, reply.Error);
            Assert.True(answered.Add(reply.Handle), $"handle {reply.Handle} answered twice");
        }

        Assert.Equal(4, gated.Waiting);
        gated.Open();
        var reads = new HashSet<ulong>();
        for (int i = 0; i < 4; i++)
        {
            var reply = (await blocked.ReadSimpleReplyAsync(Block))!.Value;
            Assert.Equal(NbdError.None, reply.Error);
            Assert.True(reads.Add(reply.Handle));
        }
    }

    /// <summary>Writes a region of <see cref="Blocks"/> blocks, then reads it back in 4, 16 and 64 KiB reads
    /// mixed with flushes, all pipelined; sending and receiving run at once so neither side's buffers fill.</summary>
    private static async Task Exercise(RawClient client, int region)
    {
        long baseOffset = (long)region * Blocks * Block;
        var writes = new List<byte[]>();
        var expected = new Dictionary<ulong, int>();
        for (int i = 0; i < Blocks; i++)
        {
            writes.Add(Request(CommandType.Write, (ulong)i, baseOffset + (i * Block), Block, Pattern(region, i)));
            expected[(ulong)i] = 0;
        }

        await RunAsync(client, writes, expected, _ => null);

        // Reads of 1, 4 and 16 blocks (16 and 64 KiB: at and over the size that is queued), with flushes between.
        var reads = new List<byte[]>();
        var lengths = new Dictionary<ulong, int>();
        var offsets = new Dictionary<ulong, int>();
        ulong handle = 1000;
        for (int block = 0; block < Blocks;)
        {
            int count = Math.Min(Blocks - block, (block % 7) switch { 0 => 4, 3 => 16, _ => 1 });
            reads.Add(Request(CommandType.Read, handle, baseOffset + ((long)block * Block), count * Block, null));
            lengths[handle] = count * Block;
            offsets[handle] = block;
            handle++;
            block += count;
            if (block % 5 == 0)
            {
                reads.Add(Request(CommandType.Flush, handle, 0, 0, null));
                lengths[handle] = 0;
                handle++;
            }
        }

        await RunAsync(client, reads, lengths, h =>
        {
            if (!offsets.TryGetValue(h, out int first))
            {
                return null;
            }

            var data = new byte[lengths[h]];
            for (int i = 0; i < data.Length / Block; i++)
            {
                Pattern(region, first + i).CopyTo(data, i * Block);
            }

            return data;
        });
    }

    /// <summary>Sends every request while reading the replies, which may come in any order; each handle must be
    /// answered exactly once, without error, with the data <paramref name="expectedData"/> names.</summary>
    private static async Task RunAsync(RawClient client, List<byte[]> requests, Dictionary<ulong, int> dataLengths, Func<ulong, byte[]?> expectedData)
    {
        Task sending = Task.Run(async () =>
        {
            foreach (byte[] request in requests)
            {
                await client.SendAsync(request);
            }
        });

        var answered = new HashSet<ulong>();
        for (int i = 0; i < requests.Count; i++)
        {
            byte[] header = await client.ReadExactAsync(SimpleReply.Size) ?? throw new EndOfStreamException($"closed after {i} replies");
            Assert.Equal(NbdMagic.SimpleReply, BinaryPrimitives.ReadUInt32BigEndian(header));
            Assert.Equal(NbdError.None, (NbdError)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4)));
            ulong handle = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
            Assert.True(dataLengths.TryGetValue(handle, out int length), $"reply for unknown handle {handle}");
            Assert.True(answered.Add(handle), $"handle {handle} answered twice");
            if (expectedData(handle) is { } data)
            {
                byte[] got = await client.ReadExactAsync(length) ?? throw new EndOfStreamException();
                Assert.True(data.AsSpan().SequenceEqual(got), $"read {handle} returned other data");
            }
        }

        await sending;
    }

    private static byte[] Request(CommandType type, ulong handle, long offset, int length, byte[]? payload)
    {
        var bytes = new byte[RequestHeader.Size + (payload?.Length ?? 0)];
        new RequestHeader(NbdMagic.Request, 0, type, handle, (ulong)offset, (uint)length).Write(bytes);
        payload?.CopyTo(bytes, RequestHeader.Size);
        return bytes;
    }

    /// <summary>A block's contents that name its connection and block, so a reply with another's data shows.</summary>
    private static byte[] Pattern(int region, int block)
    {
        var data = new byte[Block];
        for (int i = 0; i < data.Length; i += 8)
        {
            BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(i), (region << 24) | block);
            BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(i + 4), i);
        }

        return data;
    }
}
