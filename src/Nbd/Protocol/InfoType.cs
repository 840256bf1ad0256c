namespace Nbd.Protocol;

/// <summary>Information items of NBD_OPT_INFO / NBD_OPT_GO, sent in NBD_REP_INFO replies.</summary>
public enum InfoType : ushort
{
    Export = 0,
    Name = 1,
    Description = 2,
    BlockSize = 3,
}
