using System.Buffers.Binary;
using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Tests.Interop;
using Nbd.Tests.Sessions;

namespace Nbd.Tests.Review;

/// <summary>
/// Review P: transmission-phase requests checked against doc/proto.md of NetworkBlockDevice/nbd (the sentences are
/// quoted above each test). Each test fails on the code as reviewed, for the reason given.
/// </summary>
public class RevPTransmissionTests
{
    private const int MaxPayload = 64 << 10;

    /// <summary>GO asking for NBD_INFO_BLOCK_SIZE (so the client is bound by it); returns the advertised maximum.</summary>
    private static async Task<uint> GoWithBlockSizesAsync(RawClient client)
    {
        await client.StartAsync();
        var (_, final, replies) = await client.GoAsync("mem", (ushort)InfoType.BlockSize);
        Assert.Equal(OptionReplyType.Ack, final);
        RawClient.OptionReplyMessage blockSize = Assert.Single(replies,
            r => r.Type == OptionReplyType.Info && BinaryPrimitives.ReadUInt16BigEndian(r.Payload) == (ushort)InfoType.BlockSize);
        return BinaryPrimitives.ReadUInt32BigEndian(blockSize.Payload.AsSpan(10));
    }

    // doc/proto.md, "Block size constraints": "The server SHOULD report an NBD_EINVAL error if the client's request
    // is not aligned to advertised minimum block size boundaries, or is larger than the advertised maximum block
    // size." and, under "Error values": "The server SHOULD NOT return NBD_EOVERFLOW except as documented in response
    // to NBD_CMD_READ when NBD_CMD_FLAG_DF is supported."
    // RequestValidator.CheckPayload answers READ and WRITE longer than MaxPayload (the advertised maximum) with
    // EOVERFLOW, on a connection with simple replies where there is no DF at all.
    [Theory]
    [InlineData(CommandType.Write)]
    [InlineData(CommandType.Read)]
    public async Task Read_or_write_over_the_advertised_maximum_gets_EINVAL_not_EOVERFLOW(CommandType type)
    {
        await using var server = new TestServer(new NbdServerOptions { MaxPayload = MaxPayload });
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        uint maximum = await GoWithBlockSizesAsync(client);
        Assert.Equal((uint)MaxPayload, maximum);

        uint length = 2 * maximum;
        await client.SendRequestAsync(type, 1, 0, length, 0, type == CommandType.Write ? new byte[length] : null);
        var reply = (await client.ReadSimpleReplyAsync())!.Value;
        Assert.Equal(1UL, reply.Handle);
        Assert.Equal(NbdError.Invalid, reply.Error);

        // The connection goes on.
        await client.SendRequestAsync(CommandType.Read, 2, 0, 4096);
        Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync(4096))!.Value.Error);
    }

    // doc/proto.md, "Block size constraints": "Also for NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_CACHE and
    // NBD_CMD_WRITE_ZEROES (except for when NBD_CMD_FLAG_FAST_ZERO is set), the client MUST NOT use a *length*
    // larger than any advertised maximum block size. The server SHOULD report an NBD_EINVAL error if the client's
    // request [...] is larger than the advertised maximum block size."
    // RequestValidator checks only the range of NBD_CMD_CACHE (CheckRange), never the maximum, and NbdSession.Execute
    // answers it with success.
    [Fact]
    public async Task Cache_over_the_advertised_maximum_gets_EINVAL()
    {
        await using var server = new TestServer(new NbdServerOptions { MaxPayload = MaxPayload });
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        uint maximum = await GoWithBlockSizesAsync(client);

        await client.SendRequestAsync(CommandType.Cache, 1, 0, 16 * maximum);
        var reply = (await client.ReadSimpleReplyAsync())!.Value;
        Assert.Equal(1UL, reply.Handle);
        Assert.Equal(NbdError.Invalid, reply.Error);
    }
}
