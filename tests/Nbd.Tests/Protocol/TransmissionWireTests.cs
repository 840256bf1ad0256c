using Nbd.Devices;
using Nbd.Protocol;

namespace Nbd.Tests.Protocol;

/// <summary>Golden vectors for requests, simple replies and every structured reply chunk this server sends.</summary>
public class TransmissionWireTests
{
    [Fact]
    public void Request_header_round_trips_the_wire_format()
    {
        // magic, flags FUA|NO_HOLE, type WRITE_ZEROES, handle, offset 1 MiB, length 64 KiB.
        const string Hex = "25609513" + "0003" + "0006" + "0102030405060708" + "0000000000100000" + "00010000";
        var header = RequestHeader.Read(Convert.FromHexString(Hex));

        Assert.True(header.HasValidMagic);
        Assert.Equal(CommandFlags.Fua | CommandFlags.NoHole, header.Flags);
        Assert.Equal(CommandType.WriteZeroes, header.Type);
        Assert.Equal(0x0102030405060708UL, header.Handle);
        Assert.Equal(1UL << 20, header.Offset);
        Assert.Equal(65536u, header.Length);

        var written = new byte[RequestHeader.Size];
        header.Write(written);
        Assert.Equal(Hex, Convert.ToHexString(written));
    }

    [Theory]
    [InlineData(NbdError.None, "67446698" + "00000000" + "1122334455667788")]
    [InlineData(NbdError.Invalid, "67446698" + "00000016" + "1122334455667788")]
    [InlineData(NbdError.NoSpace, "67446698" + "0000001C" + "1122334455667788")]
    [InlineData(NbdError.Shutdown, "67446698" + "0000006C" + "1122334455667788")]
    public void Simple_reply_matches_the_wire_format(NbdError error, string expectedHex)
    {
        var buffer = new byte[SimpleReply.Size];
        Assert.Equal(16, SimpleReply.Write(buffer, error, 0x1122334455667788));
        Assert.Equal(expectedHex, Convert.ToHexString(buffer));
    }

    public static TheoryData<string, string> Chunks => new()
    {
        // OFFSET_DATA prefix (not last): payload length 8 + 4096, offset 0x2000.
        { "data", "668E33EF" + "0000" + "0001" + "00000000000000AA" + "00001008" + "0000000000002000" },
        // OFFSET_HOLE with DONE: offset 0x3000, size 0x1000.
        { "hole", "668E33EF" + "0001" + "0002" + "00000000000000AA" + "0000000C" + "0000000000003000" + "00001000" },
        // ERROR with DONE: EINVAL, message "bad".
        { "error", "668E33EF" + "0001" + "8001" + "00000000000000AA" + "00000009" + "00000016" + "0003" + "626164" },
        // BLOCK_STATUS with DONE: context 1, two descriptors (0x2000 data, 0x1000 hole|zero).
        { "status", "668E33EF" + "0001" + "0005" + "00000000000000AA" + "00000014" + "00000001" + "00002000" + "00000000" + "00001000" + "00000003" },
    };

    [Theory]
    [MemberData(nameof(Chunks))]
    public void Structured_chunk_matches_the_wire_format(string kind, string expectedHex)
    {
        var buffer = new byte[128];
        int n;
        switch (kind)
        {
            case "data":
                n = StructuredReply.WriteOffsetDataPrefix(buffer, StructuredReplyFlags.None, 0xAA, 0x2000, 4096);
                break;
            case "hole":
                n = StructuredReply.WriteOffsetHole(buffer, StructuredReplyFlags.Done, 0xAA, 0x3000, 0x1000);
                break;
            case "error":
                n = StructuredReply.WriteError(buffer, 0xAA, NbdError.Invalid, "bad"u8);
                break;
            default:
                n = StructuredReply.WriteBlockStatusPrefix(buffer, StructuredReplyFlags.Done, 0xAA, 1, 2);
                n += StructuredReply.WriteBlockStatusDescriptor(buffer.AsSpan(n), 0x2000, ExtentFlags.Allocated);
                n += StructuredReply.WriteBlockStatusDescriptor(buffer.AsSpan(n), 0x1000, ExtentFlags.Hole | ExtentFlags.Zero);
                break;
        }

        Assert.Equal(expectedHex, Convert.ToHexString(buffer, 0, n));
    }

    [Fact]
    public void Header_sizes_match_the_spec()
    {
        Assert.Equal(28, RequestHeader.Size);
        Assert.Equal(16, SimpleReply.Size);
        Assert.Equal(20, StructuredReply.HeaderSize);
        Assert.Equal(20, OptionReply.HeaderSize);
        Assert.Equal(16, OptionRequestHeader.Size);
        Assert.Equal(32, StructuredReply.OffsetHoleSize);
    }
}
