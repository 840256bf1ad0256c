namespace ZsAlloc.SizeClasses;

/// <summary>
/// The zsmalloc size-class table for 4 KiB pages, computed as mm/zsmalloc.c's zs_create_pool does:
/// classes every 16 bytes from 32 to 4096, each choosing the zspage chain length (1..chain limit pages)
/// that wastes the least tail space (calculate_zspage_chain_size), and neighbouring classes with the same
/// (pages per zspage, objects per zspage) merged into the larger one, which can hold both.
/// </summary>
public sealed class SizeClassTable
{
    public const int PageSize = 4096;
    public const int MinAllocSize = 32;
    public const int MaxAllocSize = PageSize;
    public const int ClassDelta = 16;
    public const int DefaultChainLimit = 16;
    public const int MinChainLimit = 4;
    public const int MaxChainLimit = 16;

    /// <summary>Number of 16-byte size steps from 32 to 4096: the kernel's ZS_SIZE_CLASSES (255 for 4 KiB pages).</summary>
    public const int StepCount = ((MaxAllocSize - MinAllocSize + ClassDelta - 1) / ClassDelta) + 1;

    private readonly SizeClassInfo[] _classes;
    private readonly byte[] _stepToClass;

    public SizeClassTable(int chainLimit = DefaultChainLimit)
    {
        if (chainLimit is < MinChainLimit or > MaxChainLimit)
        {
            throw new ArgumentOutOfRangeException(nameof(chainLimit), chainLimit,
                $"The zspage chain limit must be between {MinChainLimit} and {MaxChainLimit} pages.");
        }

        ChainLimit = chainLimit;
        _stepToClass = new byte[StepCount];
        var distinct = new List<SizeClassInfo>();

        // Walk from the largest step down, as the kernel does, so a merged class keeps the largest size of its run.
        var stepClass = new int[StepCount];
        int previous = -1;
        for (int step = StepCount - 1; step >= 0; step--)
        {
            int size = Math.Min(MinAllocSize + (step * ClassDelta), MaxAllocSize);
            int pages = ChainSize(size, chainLimit);
            int objects = pages * PageSize / size;
            if (previous >= 0 && distinct[previous].PagesPerZspage == pages && distinct[previous].ObjectsPerZspage == objects)
            {
                stepClass[step] = previous;
                continue;
            }

            distinct.Add(new SizeClassInfo(0, size, pages, objects));
            previous = distinct.Count - 1;
            stepClass[step] = previous;
        }

        // Index classes from smallest to largest.
        int count = distinct.Count;
        _classes = new SizeClassInfo[count];
        for (int i = 0; i < count; i++)
        {
            SizeClassInfo c = distinct[count - 1 - i];
            _classes[i] = c with { Index = i };
        }

        for (int step = 0; step < StepCount; step++)
        {
            _stepToClass[step] = checked((byte)(count - 1 - stepClass[step]));
        }

        // The first class (from the top) that is not one object in one page: objects of this size or more
        // gain nothing from sharing pages, so they go to the huge class (the kernel's zs_huge_class_size).
        HugeClassSize = MaxAllocSize + 1;
        for (int i = count - 1; i >= 0; i--)
        {
            if (_classes[i].PagesPerZspage == 1 && _classes[i].ObjectsPerZspage == 1)
            {
                continue;
            }

            HugeClassSize = _classes[i].Size + 1;
            break;
        }
    }

    public int ChainLimit { get; }

    /// <summary>Number of distinct classes after merging.</summary>
    public int Count => _classes.Length;

    /// <summary>Objects of at least this many bytes (header included) take a whole page of their own.</summary>
    public int HugeClassSize { get; }

    public SizeClassInfo this[int index] => _classes[index];

    /// <summary>The class that stores an object of <paramref name="size"/> bytes (1..4096).</summary>
    public int ClassIndexFor(int size)
    {
        if ((uint)(size - 1) >= MaxAllocSize)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, $"Object size must be between 1 and {MaxAllocSize} bytes.");
        }

        int step = size <= MinAllocSize ? 0 : (size - MinAllocSize + ClassDelta - 1) / ClassDelta;
        return _stepToClass[step];
    }

    /// <summary>
    /// calculate_zspage_chain_size: a power-of-two size fills one page exactly; otherwise the chain length
    /// with the least waste at its tail, the shortest on a tie.
    /// </summary>
    public static int ChainSize(int classSize, int chainLimit)
    {
        if ((classSize & (classSize - 1)) == 0)
        {
            return 1;
        }

        int best = 1;
        int minWaste = int.MaxValue;
        for (int pages = 1; pages <= chainLimit; pages++)
        {
            int waste = pages * PageSize % classSize;
            if (waste < minWaste)
            {
                minWaste = waste;
                best = pages;
            }
        }

        return best;
    }
}
