using Nbd.Protocol;

namespace Nbd.Tests.Protocol;

/// <summary>Golden vectors for every handshake reply layout (doc/proto.md "Option reply types", "NBD_OPT_INFO").</summary>
public class OptionReplyTests
{
    private const string Magic = "0003E889045565A9";

    public static TheoryData<string, string> Replies => new()
    {
        // ACK to NBD_OPT_STRUCTURED_REPLY (8): magic, option, reply type 1, length 0.
        { "ack", Magic + "00000008" + "00000001" + "00000000" },
        // ERR_UNSUP to option 0x2A with no message.
        { "unsup", Magic + "0000002A" + "80000001" + "00000000" },
        // ERR_TLS_REQD to NBD_OPT_GO with message "tls".
        { "tlsreqd", Magic + "00000007" + "80000005" + "00000003" + "746C73" },
        // ERR_UNKNOWN (2^31 + 6) and ERR_TOO_BIG (2^31 + 9) to NBD_OPT_INFO.
        { "unknown", Magic + "00000006" + "80000006" + "00000000" },
        { "toobig", Magic + "00000006" + "80000009" + "00000000" },
        // NBD_REP_SERVER for NBD_OPT_LIST: name length 3, "mem", description "d1".
        { "server", Magic + "00000003" + "00000002" + "00000009" + "00000003" + "6D656D" + "6431" },
        // NBD_REP_INFO / NBD_INFO_EXPORT for GO: size 16 MiB, flags 0x0D6D.
        { "export", Magic + "00000007" + "00000003" + "0000000C" + "0000" + "0000000001000000" + "0D6D" },
        // NBD_REP_INFO / NBD_INFO_NAME "mem" and NBD_INFO_DESCRIPTION "d".
        { "name", Magic + "00000006" + "00000003" + "00000005" + "0001" + "6D656D" },
        { "description", Magic + "00000006" + "00000003" + "00000003" + "0002" + "64" },
        // NBD_REP_INFO / NBD_INFO_BLOCK_SIZE: 1, 4096, 32 MiB.
        { "blocksize", Magic + "00000007" + "00000003" + "0000000E" + "0003" + "00000001" + "00001000" + "02000000" },
        // NBD_REP_META_CONTEXT for SET_META_CONTEXT (10): id 1, "base:allocation".
        { "meta", Magic + "0000000A" + "00000004" + "00000013" + "00000001" + "626173653A616C6C6F636174696F6E" },
    };

    [Theory]
    [MemberData(nameof(Replies))]
    public void Reply_matches_the_wire_format(string kind, string expectedHex)
    {
        var buffer = new byte[256];
        int n = kind switch
        {
            "ack" => OptionReply.Write(buffer, 8, OptionReplyType.Ack),
            "unsup" => OptionReply.Write(buffer, 42, OptionReplyType.ErrUnsupported),
            "tlsreqd" => OptionReply.WriteError(buffer, 7, OptionReplyType.ErrTlsRequired, "tls"u8),
            "unknown" => OptionReply.Write(buffer, 6, OptionReplyType.ErrUnknown),
            "toobig" => OptionReply.Write(buffer, 6, OptionReplyType.ErrTooBig),
            "server" => OptionReply.WriteServer(buffer, 3, "mem"u8, "d1"u8),
            "export" => OptionReply.WriteInfoExport(buffer, 7, 16 << 20, (TransmissionFlags)0x0D6D),
            "name" => OptionReply.WriteInfoString(buffer, 6, InfoType.Name, "mem"u8),
            "description" => OptionReply.WriteInfoString(buffer, 6, InfoType.Description, "d"u8),
            "blocksize" => OptionReply.WriteInfoBlockSize(buffer, 7, 1, 4096, 32 << 20),
            "meta" => OptionReply.WriteMetaContext(buffer, 10, 1, "base:allocation"u8),
            _ => throw new ArgumentException(kind),
        };

        Assert.Equal(expectedHex, Convert.ToHexString(buffer, 0, n));
    }

    [Theory]
    [InlineData(true, "0000000001000000" + "0D6D")]
    [InlineData(false, "0000000001000000" + "0D6D")]
    public void Export_name_reply_is_size_flags_and_124_zeroes_unless_no_zeroes(bool noZeroes, string expectedPrefix)
    {
        var buffer = new byte[256];
        Array.Fill(buffer, (byte)0xEE);
        int n = OptionReply.WriteExportNameReply(buffer, 16 << 20, (TransmissionFlags)0x0D6D, noZeroes);

        Assert.Equal(noZeroes ? 10 : 134, n);
        Assert.Equal(expectedPrefix, Convert.ToHexString(buffer, 0, 10));
        Assert.All(buffer[10..n], b => Assert.Equal(0, b));
    }

    [Theory]
    [InlineData(TransmissionFlags.HasFlags, 0x0001)]
    [InlineData(TransmissionFlags.ReadOnly, 0x0002)]
    [InlineData(TransmissionFlags.SendFlush, 0x0004)]
    [InlineData(TransmissionFlags.SendFua, 0x0008)]
    [InlineData(TransmissionFlags.SendTrim, 0x0020)]
    [InlineData(TransmissionFlags.SendWriteZeroes, 0x0040)]
    [InlineData(TransmissionFlags.SendDf, 0x0080)]
    [InlineData(TransmissionFlags.CanMultiConn, 0x0100)]
    [InlineData(TransmissionFlags.SendCache, 0x0400)]
    [InlineData(TransmissionFlags.SendFastZero, 0x0800)]
    public void Transmission_flag_bits_match_the_spec(TransmissionFlags flag, int bit) => Assert.Equal(bit, (int)flag);

    [Fact]
    public void Option_request_header_is_parsed_big_endian()
    {
        byte[] bytes = Convert.FromHexString("49484156454F5054" + "00000007" + "0000000A");
        var header = OptionRequestHeader.Read(bytes);
        Assert.True(header.HasValidMagic);
        Assert.Equal(7u, header.Option);
        Assert.Equal(10u, header.Length);
    }
}
