using ZsAlloc.SizeClasses;

namespace ZsAlloc;

public sealed class ZsPoolOptions
{
    /// <summary>Most pages a zspage may chain (the kernel's CONFIG_ZSMALLOC_CHAIN_SIZE), 4..16.</summary>
    public int ChainLimit { get; init; } = SizeClassTable.DefaultChainLimit;

    /// <summary>Handles the deferred-free queue holds: 128 MiB of 4 KiB pages, as the kernel. 0 = always free at once.</summary>
    public int DeferredFreeCapacity { get; init; } = (128 << 20) / SizeClassTable.PageSize;

    /// <summary>Names the pool in logs.</summary>
    public string Name { get; init; } = "zram";
}
