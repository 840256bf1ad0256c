namespace ZsAlloc.Tests.Pool;

/// <summary>Two zspages of one class with an untouched tail each: what compaction makes of them.</summary>
public sealed class RacingZspageCreationTests
{
    /// <summary>
    /// Malloc lets go of the class lock to create a zspage when none is partial, and adds it without looking again: two
    /// writers that both found none each make one, and the class has two tails (ShrinkTarget knows it can happen). Once
    /// both are the fullest zspages, CompactClass's destination is PickTarget's, which looks at the fullest and at one
    /// other only: both tails, neither with a freed slot, so CompactClass stops at once, and ShrinkClass refuses a class
    /// with two tails. Zspages that zs_can_compact counts as freeable stay until a writer fills a tail, and CanCompact
    /// keeps promising pages that Compact never gives back.
    /// </summary>
    [Fact]
    public void Compaction_frees_what_it_promised_when_two_writers_each_made_a_zspage_with_a_tail()
    {
        for (int attempt = 0; attempt < 100; attempt++)
        {
            using var pool = new ZsPool(new ZsPoolOptions { DeferredFreeCapacity = 0 });
            // Class 0: 32-byte slots, 128 to a one-page zspage. Three full zspages, F.
            var full = new uint[3 * 128];
            for (int i = 0; i < full.Length; i++)
            {
                full[i] = pool.Malloc(20);
                pool.Write(full[i], TestPattern.Slice(i, 20));
            }

            // Huge objects (a page each, never written, so never resident) take the rest of the first arena: the next
            // zspage maps a new arena, which keeps the first writer inside CreateZspage long enough for the second.
            for (int page = 3; page < 16384; page++)
            {
                pool.Malloc(4096);
            }

            using var start = new Barrier(2);
            var raced = new uint[2];
            var writers = new Thread[2];
            for (int w = 0; w < writers.Length; w++)
            {
                int writer = w;
                writers[w] = new Thread(() =>
                {
                    start.SignalAndWait();
                    raced[writer] = pool.Malloc(20);
                });
                writers[w].Start();
            }

            foreach (Thread t in writers)
            {
                Assert.True(t.Join(TimeSpan.FromSeconds(60)));
            }

            if (pool.GetClassStats()[0].PagesUsed != 5)
            {
                continue; // the writers shared one zspage: try again
            }

            // Two tails of one object each. Fill them to about 100 objects each (allocation alternates between them),
            // then empty F to 28 objects each: 300 freed slots in F, two zspages' worth.
            for (int i = 0; i < 200; i++)
            {
                pool.Write(pool.Malloc(20), TestPattern.Slice(i, 20));
            }

            for (int i = 0; i < full.Length; i++)
            {
                if (i % 128 < 100)
                {
                    pool.Free(full[i]);
                }
            }

            ZsClassStats before = pool.GetClassStats()[0];
            Assert.Equal(5, before.PagesUsed);
            Assert.Equal(2, before.Freeable);

            long freed = pool.Compact();
            ZsClassStats after = pool.GetClassStats()[0];
            Assert.True(freed >= 2 && after.PagesUsed <= 3,
                $"Compact freed {freed} pages of the {before.Freeable} zs_can_compact promised; class 0 still has {after.PagesUsed} "
                + $"zspages for {after.ObjUsed} objects and says {after.Freeable} more are freeable (two tails, neither a destination)");
            for (int i = 0; i < full.Length; i++)
            {
                if (i % 128 >= 100)
                {
                    var bytes = new byte[20];
                    pool.Read(full[i], bytes);
                    Assert.Equal(TestPattern.Slice(i, 20), bytes);
                }
            }

            return;
        }

        // Two writers never made a zspage each (a Malloc that looks again under the lock keeps a class to one tail, which
        // fixes this too). On the code this was written against, the first attempt makes two.
    }
}
