namespace Nbd.Protocol;

/// <summary>Magic numbers of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md). All are sent big-endian.</summary>
public static class NbdMagic
{
    /// <summary>"NBDMAGIC": the first 8 bytes a server sends.</summary>
    public const ulong InitPasswd = 0x4e42444d41474943;

    /// <summary>"IHAVEOPT": newstyle negotiation; also prefixes every option the client sends.</summary>
    public const ulong IHaveOpt = 0x49484156454F5054;

    /// <summary>Prefixes every option reply from the server.</summary>
    public const ulong OptionReply = 0x3e889045565a9;

    public const uint Request = 0x25609513;
    public const uint SimpleReply = 0x67446698;
    public const uint StructuredReply = 0x668e33ef;
}
