using ZsAlloc.Handles;
using ZsAlloc.SizeClasses;

namespace ZsAlloc;

public sealed class ZsPoolOptions
{
    /// <summary>
    /// Most pages a zspage may chain (the kernel's CONFIG_ZSMALLOC_CHAIN_SIZE), 4..16. Default 16 (the kernel's is 8):
    /// longer chains fit objects more tightly and push the huge watermark from 3629 to 3837 bytes, and since a
    /// zspage's pages count only as its slots are first used, the longer half-filled last zspage of each class costs
    /// no more than a short one.
    /// </summary>
    public int ChainLimit { get; init; } = SizeClassTable.DefaultChainLimit;

    /// <summary>Handles the deferred-free queue holds: 128 MiB of 4 KiB pages, as the kernel. 0 = always free at once.</summary>
    public int DeferredFreeCapacity { get; init; } = (128 << 20) / SizeClassTable.PageSize;

    /// <summary>
    /// Most handle cells the table may create (objects and words held at once, plus free cells). 2^31 by default, which
    /// no pool reaches: a lower one lets tests run the pool out of cells and see what a failed handle allocation leaves.
    /// </summary>
    internal uint MaxHandleCells { get; init; } = HandleCell.MaxCells;

    /// <summary>Names the pool in logs.</summary>
    public string Name { get; init; } = "zram";
}
