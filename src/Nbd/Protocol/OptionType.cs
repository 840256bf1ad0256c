namespace Nbd.Protocol;

/// <summary>Option numbers a client sends during option haggling (doc/proto.md "Option types").</summary>
public enum OptionType : uint
{
    ExportName = 1,
    Abort = 2,
    List = 3,
    StartTls = 5,
    Info = 6,
    Go = 7,
    StructuredReply = 8,
    ListMetaContext = 9,
    SetMetaContext = 10,
}
