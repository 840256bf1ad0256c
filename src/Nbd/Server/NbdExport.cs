using Nbd.Devices;

namespace Nbd;

/// <summary>A named block device offered to clients. <see cref="Description"/>, shown by NBD_OPT_LIST and
/// NBD_INFO_DESCRIPTION, is asked of <paramref name="Describe"/> each time, so it may follow the device's state.</summary>
public sealed record NbdExport(string Name, Func<string> Describe, IBlockDevice Device)
{
    public NbdExport(string name, string description, IBlockDevice device)
        : this(name, () => description, device)
    {
    }

    public string Description => Describe();
}
