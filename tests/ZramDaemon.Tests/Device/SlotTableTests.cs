using System.Runtime.CompilerServices;
using ZramDaemon.Compression;
using ZramDaemon.Device;

namespace ZramDaemon.Tests.Device;

/// <summary>The 8-byte slot: its bit layout, and the lock bit inside the info word.</summary>
public class SlotTableTests
{
    [Fact]
    public void A_slot_is_eight_bytes_and_the_table_costs_eight_per_block()
    {
        Assert.Equal(8, Unsafe.SizeOf<Slot>());
        Assert.Equal(SlotTable.SlotSize, Unsafe.SizeOf<Slot>());
        Assert.Equal(8L * 1000, new SlotTable(1000).Bytes);
    }

    [Fact]
    public void Info_fields_do_not_overlap_and_bits_24_to_30_stay_free()
    {
        uint algorithms = 0;
        foreach (CompressionAlgorithm algorithm in Enum.GetValues<CompressionAlgorithm>())
        {
            uint info = SlotInfo.Compressed(4096, algorithm);
            Assert.Equal(4096, SlotInfo.Size(info));
            Assert.Equal(algorithm, SlotInfo.Algorithm(info));
            algorithms |= info & ~(SlotInfo.SizeMask | SlotInfo.Written);
        }

        uint[] fields =
        [
            SlotInfo.SizeMask, SlotInfo.Written, SlotInfo.Same, SlotInfo.Huge, 3u << 16,
            SlotInfo.IdleAgeMask, SlotInfo.Recompressed, SlotInfo.WrittenBack, SlotInfo.Deduped, SlotInfo.SameInSlot,
            SlotInfo.Locked,
        ];
        uint used = 0;
        foreach (uint field in fields)
        {
            Assert.Equal(0u, used & field);
            used |= field;
        }

        Assert.Equal(0u, algorithms & ~(3u << 16));
        // What comes next (dedup, ...) builds on these: nothing here may take them.
        const uint spare = ((1u << 7) - 1) << 24;
        Assert.Equal(0u, used & spare);
        Assert.Equal(uint.MaxValue, used | spare);
        Assert.Equal(0u, (SlotInfo.Raw() | SlotInfo.SameFilled() | SlotInfo.SameFilledInSlot()) & (spare | SlotInfo.Locked));
    }

    [Fact]
    public void Setting_a_locked_slot_keeps_the_lock_and_peeks_never_show_it()
    {
        var table = new SlotTable(4);
        table.Lock(2);
        uint info = SlotInfo.Compressed(1234, CompressionAlgorithm.Zstd);
        table.Set(2, 0xfffffffe, info);
        Assert.Equal(info, table.Info(2));
        Assert.Equal(info, table.PeekInfo(2));
        table.Peek(2, out uint value, out uint peeked);
        Assert.Equal((0xfffffffeu, info), (value, peeked));

        // Still locked: another thread cannot take it until Unlock.
        var taken = new ManualResetEventSlim();
        var other = new Thread(() =>
        {
            table.Lock(2);
            taken.Set();
            table.Unlock(2);
        });
        other.Start();
        Assert.False(taken.Wait(100));
        table.Unlock(2);
        Assert.True(taken.Wait(TimeSpan.FromSeconds(30)));
        other.Join();
        Assert.Equal(info, table.PeekInfo(2));
        Assert.Equal(0xfffffffeu, table.Value(2));
    }

    [Fact]
    public void The_lock_bit_excludes_other_threads_while_neighbours_change()
    {
        var table = new SlotTable(2);
        long counter = 0;
        using var start = new Barrier(4);
        var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            for (int i = 0; i < 20_000; i++)
            {
                table.Lock(0);
                // A non-atomic read-modify-write, and the info word rewritten while held: both must survive.
                long seen = counter;
                if ((i & 31) == 0)
                {
                    // Give the others a chance to run while this thread is inside (there may be one core only).
                    Thread.Yield();
                }

                table.Set(0, (uint)seen, SlotInfo.Compressed((int)(seen % 4096), CompressionAlgorithm.Lz4));
                counter = seen + 1;
                table.Unlock(0);

                table.Lock(1);
                table.Set(1, (uint)t, SlotInfo.SameFilled());
                table.Unlock(1);
            }
        })).ToList();
        threads.ForEach(thread => thread.Start());
        threads.ForEach(thread => thread.Join());

        Assert.Equal(80_000, counter);
        table.Peek(0, out uint last, out _);
        Assert.Equal(79_999u, last);
        Assert.Equal(SlotInfo.Compressed(79_999 % 4096, CompressionAlgorithm.Lz4), table.PeekInfo(0));
    }
}
