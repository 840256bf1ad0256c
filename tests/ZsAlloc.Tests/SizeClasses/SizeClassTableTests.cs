using ZsAlloc.SizeClasses;

namespace ZsAlloc.Tests.SizeClasses;

public class SizeClassTableTests
{
    // Hand-derived from calculate_zspage_chain_size with the kernel's default chain of 8 pages:
    // waste = pages*4096 mod size, least waste wins, shortest on a tie.
    //  48: wastes 16, 32, 0 at 1..3 pages          -> 3 pages, 12288/48 = 256 objects
    // 176: wastes 48, 96, 144, 16, 64, 112, 160, 32 -> 4 pages, 16384/176 = 93 objects
    // 192: wastes 64, 128, 0                        -> 3 pages, 64 objects
    // 3632: wastes 464*k for k=1..7, then 80 at 8   -> 8 pages, 9 objects
    // 3648: wastes 448*k, no wrap within 8 pages    -> 1 page, 1 object (huge)
    [Theory]
    [InlineData(32, 1)]
    [InlineData(64, 1)]
    [InlineData(48, 3)]
    [InlineData(176, 4)]
    [InlineData(192, 3)]
    [InlineData(3632, 8)]
    [InlineData(3648, 1)]
    [InlineData(4096, 1)]
    public void Chain_size_matches_hand_derived_value(int size, int pages)
    {
        Assert.Equal(pages, SizeClassTable.ChainSize(size, 8));
    }

    [Theory]
    [InlineData(1, 32, 1, 128)]
    [InlineData(31, 32, 1, 128)]
    [InlineData(32, 32, 1, 128)]
    [InlineData(33, 48, 3, 256)]
    [InlineData(170, 176, 4, 93)]
    [InlineData(3632, 3632, 8, 9)]
    [InlineData(3633, 4096, 1, 1)]
    [InlineData(4096, 4096, 1, 1)]
    public void Object_size_maps_to_expected_class(int objectSize, int classSize, int pages, int objects)
    {
        var table = new SizeClassTable(8);
        SizeClassInfo c = table[table.ClassIndexFor(objectSize)];
        Assert.Equal(classSize, c.Size);
        Assert.Equal(pages, c.PagesPerZspage);
        Assert.Equal(objects, c.ObjectsPerZspage);
    }

    [Fact]
    public void Every_size_from_3648_to_4096_merges_into_the_one_huge_class()
    {
        var table = new SizeClassTable(8);
        int huge = table.ClassIndexFor(4096);
        Assert.Equal(table.Count - 1, huge);
        for (int size = 3633; size <= 4096; size++)
        {
            Assert.Equal(huge, table.ClassIndexFor(size));
        }

        Assert.Equal(3633, table.HugeClassSize);
    }

    // With the default chain of 16 pages: 3840 fills 15 pages with 16 objects exactly (waste 0), and 3824 (16 objects
    // in 15 pages too) merges into it; 3808 fills 14 pages with 15 (waste 224). Above 3840 nothing shares pages.
    [Theory]
    [InlineData(3808, 3808, 14, 15)]
    [InlineData(3809, 3840, 15, 16)]
    [InlineData(3840, 3840, 15, 16)]
    [InlineData(3841, 4096, 1, 1)]
    public void With_16_page_chains_sizes_up_to_3840_share_pages(int objectSize, int classSize, int pages, int objects)
    {
        var table = new SizeClassTable();
        Assert.Equal(16, table.ChainLimit);
        SizeClassInfo c = table[table.ClassIndexFor(objectSize)];
        Assert.Equal(classSize, c.Size);
        Assert.Equal(pages, c.PagesPerZspage);
        Assert.Equal(objects, c.ObjectsPerZspage);
        Assert.Equal(3841, table.HugeClassSize);
    }

    [Theory]
    [InlineData(8)]
    [InlineData(16)]
    public void Neighbouring_classes_never_share_pages_and_object_count(int chainLimit)
    {
        var table = new SizeClassTable(chainLimit);
        for (int i = 1; i < table.Count; i++)
        {
            SizeClassInfo a = table[i - 1], b = table[i];
            Assert.True(a.Size < b.Size);
            Assert.False(a.PagesPerZspage == b.PagesPerZspage && a.ObjectsPerZspage == b.ObjectsPerZspage);
            Assert.Equal(b.PagesPerZspage * SizeClassTable.PageSize / b.Size, b.ObjectsPerZspage);
        }

        // Merging must have removed some of the 255 steps.
        Assert.True(table.Count < SizeClassTable.StepCount);
        Assert.Equal(255, SizeClassTable.StepCount);
    }

    [Theory]
    [InlineData(3)]
    [InlineData(17)]
    public void Chain_limit_outside_4_to_16_is_rejected(int limit)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new SizeClassTable(limit));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(4097)]
    public void Sizes_outside_1_to_4096_are_rejected(int size)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new SizeClassTable().ClassIndexFor(size));
    }
}
