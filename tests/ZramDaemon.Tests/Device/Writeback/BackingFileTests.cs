using ZramDaemon.Device.Writeback;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>The backing file alone: block allocation, reads and writes, freeing, the daily limit's window.</summary>
public sealed class BackingFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-backing-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Every_block_is_handed_out_once_until_freed_and_holds_what_was_written()
    {
        using var file = new BackingFile(Path.Combine(_dir, "f"), 130, 0);
        var blocks = new HashSet<long>();
        for (int i = 0; i < 130; i++)
        {
            long block = file.Allocate();
            Assert.True(blocks.Add(block), $"block {block} handed out twice");
            file.Write(block, BitConverter.GetBytes(block * 31));
        }

        Assert.Equal(-1, file.Allocate());
        Assert.Equal(130, file.Count);
        Assert.Equal(Enumerable.Range(0, 130).Select(i => (long)i), blocks.Order());
        var back = new byte[8];
        Assert.True(file.Read(77, back));
        Assert.Equal(77 * 31, BitConverter.ToInt64(back));

        file.Free(77);
        Assert.Equal(129, file.Count);
        Assert.Throws<InvalidOperationException>(() => file.Free(77));
        Assert.Equal(77, file.Allocate());
        Assert.True(file.Read(77, back));
        Assert.Equal(0, BitConverter.ToInt64(back)); // punched: reads as zeros until written again
        Assert.Equal(0, file.PunchFailures);
        Assert.Throws<ArgumentOutOfRangeException>(() => file.Write(130, new byte[1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => file.Write(0, new byte[4097]));
        Assert.Equal(130, file.Writes);
        Assert.Equal(2, file.Reads);
    }

    [Fact]
    public void Concurrent_allocations_never_share_a_block()
    {
        using var file = new BackingFile(Path.Combine(_dir, "f"), 4096, 0);
        var taken = new System.Collections.Concurrent.ConcurrentBag<long>();
        Parallel.For(0, 4, _ =>
        {
            for (int i = 0; i < 1024; i++)
            {
                taken.Add(file.Allocate());
            }
        });
        Assert.Equal(4096, taken.Distinct().Count());
        Assert.DoesNotContain(-1, taken);
    }

    [Fact]
    public void The_daily_limit_allows_so_many_pages_per_24_hours()
    {
        long now = 1000;
        using var file = new BackingFile(Path.Combine(_dir, "f"), 16, 3 * BackingFile.BlockSize, () => now);
        Assert.True(file.TryTakeBudget());
        Assert.True(file.TryTakeBudget());
        Assert.True(file.TryTakeBudget());
        Assert.False(file.TryTakeBudget());
        Assert.Equal(0, file.BudgetLeft);
        now += (24 * 3600) - 1;
        Assert.False(file.TryTakeBudget());
        now += 1;
        Assert.Equal(3 * BackingFile.BlockSize, file.BudgetLeft);
        Assert.True(file.TryTakeBudget());
    }
}
