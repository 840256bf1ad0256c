using Nbd.Devices;

namespace Nbd;

/// <summary>A named block device offered to clients. <paramref name="Description"/> is shown by NBD_OPT_LIST
/// and NBD_INFO_DESCRIPTION.</summary>
public sealed record NbdExport(string Name, string Description, IBlockDevice Device);
