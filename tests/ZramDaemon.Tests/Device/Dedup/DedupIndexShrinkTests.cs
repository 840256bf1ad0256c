using ZramDaemon.Compression;
using ZramDaemon.Device;
using ZramDaemon.Device.Dedup;

namespace ZramDaemon.Tests.Device.Dedup;

/// <summary>
/// DedupIndex.Shrink with live entries left: the free list in id order, the ids past the last live entry let go, the
/// pages of entries that hold only free ids given back, the buckets fitted to the live entries. Checked against a
/// model of what the index holds: every live entry keeps its id, handle, info and reference count and is found by its
/// hash, through shrinks, reuse of the pages given back, and growth after them.
/// </summary>
public class DedupIndexShrinkTests
{
    private const int Filled = 65_536;

    [Fact]
    public void A_shrink_gives_back_the_pages_of_free_ids_and_new_entries_take_the_lowest_ids()
    {
        using var index = new DedupIndex();
        var model = new Model();
        for (int i = 0; i < Filled; i++)
        {
            model.Add(index, hash: (uint)(i * 7919), handle: (uint)i + 1);
        }

        long full = index.MetadataBytes;
        // Every 1000th entry stays (ids 0, 1000, ... 65000): each holds its page of the entry array.
        foreach (int id in model.Ids().Where(id => id % 1000 != 0).ToList())
        {
            model.Release(index, id);
        }

        long beforeShrink = index.MetadataBytes;
        Assert.Equal(full, beforeShrink);
        index.Shrink();
        long shrunk = index.MetadataBytes;
        model.Check(index);
        // 66 live entries, each in a page of its own, and 1,024 buckets: 66 pages and 1 (the full arrays: 393 pages).
        Assert.True(shrunk <= 80 * 4096, $"metadata {full} full, {shrunk} after the shrink with {model.Count} entries live");

        // The lowest free ids first: 1, 2, ... (0 is live).
        for (int expected = 1; expected <= 5; expected++)
        {
            Assert.Equal(expected, model.Add(index, hash: (uint)expected, handle: 1_000_000u + (uint)expected));
        }

        // Filling every free id again: no growth (the ids are the array's), every page counted again.
        while (model.Count < Filled)
        {
            int id = model.Add(index, hash: (uint)(model.Count * 31), handle: 2_000_000u + (uint)model.Count);
            Assert.InRange(id, 0, Filled - 1);
        }

        Assert.Equal(full, index.MetadataBytes);
        model.Check(index);

        // And past them: the arrays double.
        Assert.Equal(Filled, model.Add(index, hash: 5, handle: 3_000_000u));
        Assert.True(index.MetadataBytes > full);
        model.Check(index);
    }

    [Fact]
    public void A_shrink_without_enough_freed_since_the_last_changes_nothing()
    {
        using var index = new DedupIndex();
        var model = new Model();
        for (int i = 0; i < Filled; i++)
        {
            model.Add(index, hash: (uint)i, handle: (uint)i + 1);
        }

        // A fifth of the ids, in whole pages' worth: a shrink would give pages back, but it waits for a quarter.
        foreach (int id in model.Ids().Where(id => id < Filled / 5).ToList())
        {
            model.Release(index, id);
        }

        long before = index.MetadataBytes;
        index.Shrink();
        Assert.Equal(before, index.MetadataBytes);

        foreach (int id in model.Ids().Where(id => id < Filled / 4).ToList())
        {
            model.Release(index, id);
        }

        index.Shrink();
        Assert.True(index.MetadataBytes < before - (Filled / 4 * 20 * 9 / 10), $"metadata {before} before, {index.MetadataBytes} after a quarter went free");
        model.Check(index);
    }

    /// <summary>Random adds, shared references, releases, sole takes and shrinks, checked against the model.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Random_operations_with_shrinks_keep_every_entry(int seed)
    {
        var random = new Random(seed);
        using var index = new DedupIndex();
        var model = new Model();
        for (int step = 0; step < 300_000; step++)
        {
            int op = random.Next(1000);
            // Phases: mostly adds while small, mostly releases once large, so that shrinks find pages to give back.
            int addShare = model.Count < 20_000 ? 600 : 300;
            if (op < addShare || model.Count == 0)
            {
                model.Add(index, hash: (uint)random.Next(50_000), handle: (uint)step + 1);
            }
            else if (op < addShare + 100)
            {
                model.Share(index, model.Pick(random));
            }
            else if (op < 990)
            {
                model.Release(index, model.Pick(random));
            }
            else if (op < 995)
            {
                model.TakeSole(index, model.Pick(random));
            }
            else
            {
                index.Shrink();
            }

            if (step % 20_000 == 0)
            {
                model.Check(index);
            }
        }

        index.Shrink();
        model.Check(index);
    }

    /// <summary>What the index should hold: each live id's hash, handle, info and references.</summary>
    private sealed class Model
    {
        private readonly Dictionary<int, (uint Hash, uint Handle, uint Info, int References)> _entries = [];
        private readonly List<int> _ids = [];
        private readonly Dictionary<int, int> _positions = [];

        public int Count => _entries.Count;

        public IEnumerable<int> Ids() => _entries.Keys;

        public int Pick(Random random) => _ids[random.Next(_ids.Count)];

        public int Add(DedupIndex index, uint hash, uint handle)
        {
            uint info = SlotInfo.Compressed(100 + (int)(handle % 3000), CompressionAlgorithm.Lz4);
            long growth;
            lock (index.Lock)
            {
                growth = index.GrowthBytes;
            }

            long before = index.MetadataBytes;
            int id = index.Add(hash, handle, info);

            // What the memory-limit check before an Add counts is what the Add then takes, pages given back and
            // faulted in again included.
            Assert.Equal(growth, index.MetadataBytes - before);
            Assert.True(_entries.TryAdd(id, (hash, handle, info, 1)), $"id {id} given out while live");
            _positions[id] = _ids.Count;
            _ids.Add(id);
            return id;
        }

        public void Share(DedupIndex index, int id)
        {
            lock (index.Lock)
            {
                index.AddReference(id);
            }

            var entry = _entries[id];
            _entries[id] = entry with { References = entry.References + 1 };
        }

        public void Release(DedupIndex index, int id)
        {
            var entry = _entries[id];
            bool last = index.Release(id, out uint handle, out uint info);
            Assert.Equal((entry.Handle, entry.Info), (handle, info));
            Assert.Equal(entry.References == 1, last);
            if (last)
            {
                Forget(id);
            }
            else
            {
                _entries[id] = entry with { References = entry.References - 1 };
            }
        }

        public void TakeSole(DedupIndex index, int id)
        {
            var entry = _entries[id];
            bool taken = index.TryTakeSole(id, out uint handle, out uint info);
            Assert.Equal((entry.Handle, entry.Info), (handle, info));
            Assert.Equal(entry.References == 1, taken);
            if (taken)
            {
                Forget(id);
            }
        }

        /// <summary>The index holds exactly the model: its count and references, and each entry under its id and in
        /// its hash's chain.</summary>
        public void Check(DedupIndex index)
        {
            Assert.Equal(_entries.Count, index.Count);
            Assert.Equal(_entries.Values.Sum(e => (long)e.References), index.References);
            lock (index.Lock)
            {
                foreach ((int id, var entry) in _entries)
                {
                    Assert.Equal((entry.Handle, entry.Info), index.Get(id));
                    int found = index.First(entry.Hash);
                    while (found >= 0 && found != id)
                    {
                        found = index.Next(found);
                    }

                    Assert.True(found == id, $"entry {id} (hash {entry.Hash}) is not in its hash's chain");
                }
            }
        }

        private void Forget(int id)
        {
            _entries.Remove(id);
            _positions.Remove(id, out int at);
            int moved = _ids[^1];
            _ids.RemoveAt(_ids.Count - 1);
            if (moved != id)
            {
                _ids[at] = moved;
                _positions[moved] = at;
            }
        }
    }
}
