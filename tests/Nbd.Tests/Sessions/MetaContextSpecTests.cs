using System.Buffers.Binary;
using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Tests.Devices;
using Nbd.Tests.Interop;

namespace Nbd.Tests.Sessions;

/// <summary>Metadata context selection and BLOCK_STATUS replies as doc/proto.md pins them down.</summary>
public class MetaContextSpecTests
{
    private static async Task<RawClient> StructuredAsync(TestServer server)
    {
        RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync();
        await client.SendOptionAsync((uint)OptionType.StructuredReply, []);
        Assert.Equal(OptionReplyType.Ack, (await client.ReadOptionReplyAsync())!.Type);
        return client;
    }

    private static async Task SelectBaseAllocationAsync(RawClient client)
    {
        await client.SendOptionAsync((uint)OptionType.SetMetaContext, HandshakeConversationTests.NamePayload("mem", [0, 0, 0, 1, 0, 0, 0, 15, .. "base:allocation"u8]));
        Assert.Equal(OptionReplyType.MetaContext, (await client.ReadOptionReplyAsync())!.Type);
        Assert.Equal(OptionReplyType.Ack, (await client.ReadOptionReplyAsync())!.Type);
    }

    /// <summary>Reads one structured chunk: (flags, type, handle, payload).</summary>
    private static async Task<(ushort Flags, ushort Type, ulong Handle, byte[] Payload)> ReadChunkAsync(RawClient client)
    {
        byte[] header = (await client.ReadExactAsync(StructuredReply.HeaderSize))!;
        Assert.NotNull(header);
        Assert.Equal(NbdMagic.StructuredReply, BinaryPrimitives.ReadUInt32BigEndian(header));
        uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
        byte[] payload = length == 0 ? [] : (await client.ReadExactAsync((int)length))!;
        return (BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(4)), BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(6)),
            BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8)), payload);
    }

    // doc/proto.md, NBD_OPT_SET_META_CONTEXT: "Issuing this command replaces all previously-set metadata contexts
    // (including when this command fails)". A failed SET leaves nothing selected, so BLOCK_STATUS must be refused.
    [Theory]
    [InlineData("mem", 2, OptionReplyType.ErrInvalid)] // says 2 queries, carries 1: syntactically invalid
    [InlineData("nope", 1, OptionReplyType.ErrUnknown)] // no such export
    [InlineData("mem", 1, OptionReplyType.ErrTooBig)] // longer than the server reads: skipped unread
    public async Task A_failed_SET_META_CONTEXT_deselects_the_contexts_an_earlier_one_selected(string export, byte queries, OptionReplyType refusal)
    {
        await using var server = new TestServer();
        using RawClient client = await StructuredAsync(server);
        await SelectBaseAllocationAsync(client);

        byte[] payload = HandshakeConversationTests.NamePayload(export, [0, 0, 0, queries, 0, 0, 0, 15, .. "base:allocation"u8]);
        if (refusal == OptionReplyType.ErrTooBig)
        {
            // Padded past the longest option read: the query is whole, the rest trailing bytes never looked at.
            payload = [.. payload, .. new byte[ProtocolLimits.MaxOptionLength]];
        }

        await client.SendOptionAsync((uint)OptionType.SetMetaContext, payload);
        Assert.Equal(refusal, (await client.ReadOptionReplyAsync())!.Type);

        Assert.Equal(OptionReplyType.Ack, (await client.GoAsync("mem")).Final);
        await client.SendRequestAsync(CommandType.BlockStatus, 1, 0, 4096);
        var chunk = await ReadChunkAsync(client);
        Assert.True(
            chunk.Type == (ushort)StructuredReplyType.Error,
            $"BLOCK_STATUS was answered with chunk type {chunk.Type} although the last SET_META_CONTEXT failed");
        Assert.Equal(NbdError.Invalid, (NbdError)BinaryPrimitives.ReadUInt32BigEndian(chunk.Payload));
    }

    // doc/proto.md, NBD_CMD_BLOCK_STATUS: the server "MUST use descriptor lengths that are an integer multiple of any
    // advertised minimum block size". An export advertising 512 must not describe a 100-byte extent; a request that
    // cannot be answered that way is refused (EINVAL, as READ/WRITE/TRIM/CACHE that are unaligned are).
    [Theory]
    [InlineData(100UL, 4096U)] // unaligned offset
    [InlineData(0UL, 1000U)]   // unaligned length
    public async Task Block_status_never_describes_an_extent_smaller_than_the_advertised_minimum_block(ulong offset, uint length)
    {
        await using var server = new TestServer(null, new NbdExport("mem", "512-byte blocks", new MemoryBlockDevice(1 << 20, minimumBlockSize: 512)));
        // Block 1 holds data, block 0 is a hole: the device reports an extent boundary at 4096.
        Assert.Equal(NbdError.None, server.Device().Write(4096, Enumerable.Repeat((byte)7, 4096).ToArray(), fua: false));
        using RawClient client = await StructuredAsync(server);
        await SelectBaseAllocationAsync(client);
        var (_, final, replies) = await client.GoAsync("mem", (ushort)InfoType.BlockSize);
        Assert.Equal(OptionReplyType.Ack, final);
        Assert.Contains(replies, r => r.Type == OptionReplyType.Info && BinaryPrimitives.ReadUInt16BigEndian(r.Payload) == (ushort)InfoType.BlockSize
            && BinaryPrimitives.ReadUInt32BigEndian(r.Payload.AsSpan(2)) == 512);

        await client.SendRequestAsync(CommandType.BlockStatus, 1, offset, length);
        var chunk = await ReadChunkAsync(client);
        if (chunk.Type == (ushort)StructuredReplyType.Error)
        {
            Assert.Equal(NbdError.Invalid, (NbdError)BinaryPrimitives.ReadUInt32BigEndian(chunk.Payload));
            return;
        }

        Assert.Equal((ushort)StructuredReplyType.BlockStatus, chunk.Type);
        var lengths = new List<uint>();
        for (int i = 4; i < chunk.Payload.Length; i += 8)
        {
            lengths.Add(BinaryPrimitives.ReadUInt32BigEndian(chunk.Payload.AsSpan(i)));
        }

        Assert.True(lengths.TrueForAll(l => l % 512 == 0), "descriptor lengths " + string.Join(",", lengths) + " on an export whose minimum block size is 512");
    }
}
