using System.Reflection;
using System.Runtime.InteropServices;
using ZsAlloc.Native;
using ZsAlloc.Pages;

namespace ZsAlloc.Tests.Pages;

/// <summary>Review of arena release: random rounds against a model, and releases racing each other and allocations.</summary>
public sealed class ArenaReleaseReviewTests
{
    /// <summary>The tests that must catch a release unfinished ten times try at least 200 times, and go on for this
    /// long when those did not.</summary>
    private static readonly TimeSpan AttemptsFor = TimeSpan.FromSeconds(60);

    /// <summary>Frees a written run at once (FreeRun, to the warm lists) or adds it to a burst for FreeRuns, at random.</summary>
    private static void FreeNowOrInBurst(PageSource pages, Random random, int head, int length, List<PageRun> burst)
    {
        if (random.Next(2) == 0)
        {
            pages.FreeRun(head, length, length);
        }
        else
        {
            burst.Add(new PageRun(head, length, length));
        }
    }

    private static T Field<T>(PageSource pages, string name) =>
        (T)typeof(PageSource).GetField(name, BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(pages)!;

    /// <summary>Every page of every mapped arena is held, free, warm or the fresh tail, once; a held run keeps its bytes.</summary>
    [Fact]
    public void Random_rounds_with_releases_keep_every_page_accounted_for()
    {
        using var pages = new PageSource();
        var random = new Random(7);
        var held = new List<(int Head, int Pages)>();
        int releases = 0;
        for (int round = 0; round < 60; round++)
        {
            // Fill to a random number of arenas' worth, with lengths of a random mix, then free a random share.
            int target = random.Next(1, 5) * PageSource.PagesPerArena;
            int maxLength = random.Next(1, 17);
            long inUse = held.Sum(h => (long)h.Pages);
            while (inUse < target)
            {
                int length = random.Next(1, maxLength + 1);
                int head = pages.AllocateRun(length, out bool zeroed);
                if (zeroed)
                {
                    pages.AddResident(length);
                }

                Marshal.WriteInt32(pages.PageAddress(head), head);
                held.Add((head, length));
                inUse += length;
            }

            double share = random.NextDouble() < 0.3 ? 1.0 : random.NextDouble();
            var freed = new List<PageRun>();
            for (int i = held.Count - 1; i >= 0; i--)
            {
                if (random.NextDouble() < share)
                {
                    (int head, int length) = held[i];
                    Assert.Equal(head, Marshal.ReadInt32(pages.PageAddress(head)));
                    pages.SetOwner(head, length, 1);
                    FreeNowOrInBurst(pages, random, head, length, freed);

                    held.RemoveAt(i);
                }
            }

            pages.FreeRuns(freed.ToArray());
            switch (random.Next(4))
            {
                case 0:
                    pages.ReleaseWarm();
                    releases += pages.ReleaseEmptyArenas();
                    break;
                case 1:
                    pages.ReleaseWarmIfUnused();
                    pages.ReleaseWarmIfUnused();
                    break;
                case 2:
                    releases += pages.ReleaseEmptyArenas();
                    break;
            }

            CheckConservation(pages, held);
        }

        Assert.True(releases > 10, $"{releases} arenas released");
        Assert.True(pages.ArenaIndexLimit < 10, $"indices up to {pages.ArenaIndexLimit}: released ones not reused");
    }

    /// <summary>
    /// ReleaseEmptyArenas counts its arenas out under the lock, then unmaps them outside it. A Dispose that comes in
    /// meanwhile (the idle tick racing a pool's disposal) must not unmap any of them: the ones already unmapped may by
    /// then be another mapping's range (another pool's arena, the GC's heap), and the others the release unmaps. Its
    /// first arena is made resident (faulted in behind the source's back) so that its munmap takes long enough to
    /// take the lock during it (ten tries that catch the release unfinished); a mapping of the test stands in for
    /// whatever the kernel put in an unmapped range meanwhile.
    /// </summary>
    [Fact]
    public void A_dispose_racing_a_release_unmaps_no_range_twice()
    {
        // Bounded by time rather than tries: how often the lock is caught during a release is the scheduler's to say.
        int caught = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int attempt = 0; (attempt < 200 || clock.Elapsed < AttemptsFor) && caught < 10; attempt++)
        {
            caught += DisposeDuringRelease() ? 1 : 0;
        }

        Assert.True(caught == 10, $"the lock was taken during the release only {caught} times in {clock.Elapsed}");
    }

    /// <summary>One try of <see cref="A_dispose_racing_a_release_unmaps_no_range_twice"/>: false if the lock was not
    /// taken before the release was done.</summary>
    private static bool DisposeDuringRelease()
    {
        const int Arenas = 4;
        var pages = new PageSource();
        var runs = new PageRun[Arenas * (PageSource.PagesPerArena / 16)];
        for (int i = 0; i < runs.Length; i++)
        {
            runs[i] = new PageRun(pages.AllocateRun(16, out _), 16, 0);
        }

        pages.FreeRuns(runs);
        for (int page = 0; page < PageSource.PagesPerArena; page++)
        {
            Marshal.WriteByte(pages.PageAddress(page), 1);
        }

        var gate = Field<Lock>(pages, "_lock");
        int[]?[] owners = Field<int[]?[]>(pages, "_owners");
        nint[] bases = (nint[])Field<nint[]>(pages, "_arenaBase").Clone();
        Exception? thrown = null;
        var release = new Thread(() =>
        {
            try
            {
                pages.ReleaseEmptyArenas();
            }
            catch (Exception e)
            {
                thrown = e;
            }
        });

        nint standIn = 0;
        try
        {
            release.Start();
            while (Volatile.Read(ref owners[0]) != null || !gate.TryEnter())
            {
                if (release.Join(0))
                {
                    return false;
                }
            }

            try
            {
                // Counted out, and the release not done: it is unmapping (or, rarely, returning: hence several tries).
                if (release.Join(0))
                {
                    return false;
                }

                // Let it go as far as it can without the lock, and at least until it has unmapped an arena (polled: on
                // a loaded machine the release thread may wait long for a CPU).
                release.Join(200);
                int hole = -1;
                var waited = System.Diagnostics.Stopwatch.StartNew();
                while (hole < 0 && waited.Elapsed < TimeSpan.FromSeconds(30))
                {
                    release.Join(10);
                    for (int arena = 0; arena < Arenas - 1; arena++)
                    {
                        if (Interop.Libc.Madvise(bases[arena], (nuint)PageSource.ArenaBytes, 0) != 0)
                        {
                            hole = arena;
                        }
                    }
                }

                Assert.True(hole >= 0, "the release unmapped no arena");
                // MAP_FIXED_NOREPLACE: what another thread's mmap could get now.
                standIn = Interop.Libc.Mmap(bases[hole], (nuint)PageSource.ArenaBytes, Interop.Libc.ProtRead | Interop.Libc.ProtWrite,
                    Interop.Libc.MapPrivate | Interop.Libc.MapAnonymous | Interop.Libc.MapNoReserve | 0x100000, -1, 0);
                Assert.True(standIn == bases[hole], $"could not map the hole at 0x{bases[hole]:x}");
                pages.Dispose();
                Assert.True(Interop.Libc.Madvise(standIn, (nuint)PageSource.ArenaBytes, 0) == 0,
                    $"Dispose unmapped arena {hole}'s range again, after the release had unmapped it: another mapping there is gone");
            }
            finally
            {
                gate.Exit();
            }

            release.Join();
            Assert.Null(thrown);
            Assert.True(Interop.Libc.Madvise(standIn, (nuint)PageSource.ArenaBytes, 0) == 0,
                "the release unmapped a range that was no longer its arena's");
            return true;
        }
        finally
        {
            release.Join();
            // Only if still there: a range the failing Dispose unmapped may be another mapping by now.
            if (standIn != 0 && standIn != Interop.Libc.MapFailed && Interop.Libc.Madvise(standIn, (nuint)PageSource.ArenaBytes, 0) == 0)
            {
                Interop.Libc.Munmap(standIn, (nuint)PageSource.ArenaBytes);
            }

            pages.Dispose();
        }
    }

    /// <summary>
    /// Two workers fill a few arenas' worth with runs of random lengths (tagged), check and free them (singly and in
    /// bursts), while two threads release empty arenas (the compaction's call and the idle tick's) without pause. No
    /// page may be handed out twice or lose its tag, and the quiescent source must account for every page.
    /// </summary>
    [Fact]
    public void Releases_racing_each_other_and_allocations_lose_no_page()
    {
        using var pages = new PageSource();
        using var stop = new CancellationTokenSource();
        Exception? failure = null;
        int released = 0;
        int rounds = 0;
        using var pause = new Barrier(2);
        var threads = new List<Thread>();
        for (int r = 0; r < 2; r++)
        {
            bool idle = r == 1;
            threads.Add(new Thread(() =>
            {
                try
                {
                    while (!stop.IsCancellationRequested)
                    {
                        if (idle)
                        {
                            pages.ReleaseWarmIfUnused();
                        }
                        else
                        {
                            pages.ReleaseWarm();
                        }

                        pages.ReleaseEmptyArenas();
                        if (pages.ArenaCount < pages.ArenaIndexLimit)
                        {
                            Volatile.Write(ref released, 1);
                        }

                        Thread.Sleep(1);
                    }
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref failure, e, null);
                }
            }));
        }

        var held = new List<(int Head, int Pages)>[2];
        for (int w = 0; w < 2; w++)
        {
            int worker = w;
            held[w] = [];
            threads.Add(new Thread(() =>
            {
                var random = new Random(40 + worker);
                List<(int Head, int Pages)> mine = held[worker];
                int round = 0;
                try
                {
                    while (!stop.IsCancellationRequested)
                    {
                        int target = random.Next(1, 5) * PageSource.PagesPerArena;
                        int maxLength = random.Next(1, 17);
                        long inUse = 0;
                        while (inUse < target)
                        {
                            int length = random.Next(1, maxLength + 1);
                            int head = pages.AllocateRun(length, out bool zeroed);
                            if (zeroed)
                            {
                                pages.AddResident(length);
                            }

                            for (int page = head; page < head + length; page++)
                            {
                                if (zeroed && Marshal.ReadInt32(pages.PageAddress(page)) != 0)
                                {
                                    throw new InvalidOperationException($"zeroed page {page} reads {Marshal.ReadInt32(pages.PageAddress(page))}");
                                }

                                Marshal.WriteInt32(pages.PageAddress(page), page + (worker << 30));
                            }

                            pages.SetOwner(head, length, worker);
                            mine.Add((head, length));
                            inUse += length;
                        }

                        // Every other round frees all (at the same rounds in both workers: they pause together), else most.
                        bool all = round++ % 2 == 0;
                        var burst = new List<PageRun>();
                        for (int i = mine.Count - 1; i >= 0; i--)
                        {
                            if (!all && random.Next(10) == 0)
                            {
                                continue;
                            }

                            (int head, int length) = mine[i];
                            for (int page = head; page < head + length; page++)
                            {
                                int tag = Marshal.ReadInt32(pages.PageAddress(page));
                                if (tag != page + (worker << 30))
                                {
                                    throw new InvalidOperationException($"worker {worker}: page {page} reads {tag:x}");
                                }
                            }

                            FreeNowOrInBurst(pages, random, head, length, burst);

                            mine.RemoveAt(i);
                        }

                        pages.FreeRuns(burst.ToArray());
                        Interlocked.Increment(ref rounds);
                        if (all)
                        {
                            // A pause with nothing held by either worker: the releasers get arenas left all free.
                            pause.SignalAndWait(stop.Token);
                            Thread.Sleep(5);
                        }
                    }
                }
                catch (OperationCanceledException)
                {
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref failure, e, null);
                    pause.RemoveParticipant();
                }
            }));
        }

        threads.Add(StressStop.After(stop, TimeSpan.FromSeconds(4), () => Volatile.Read(ref released) > 0));
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Null(failure);
        Assert.True(released > 0, $"no arena was released: {rounds} rounds, {pages.ArenaCount} arenas of {pages.ArenaIndexLimit}, {pages.PagesFree} free, {pages.PagesWarm} warm, {pages.PagesInUse} in use");
        CheckConservation(pages, [.. held[0], .. held[1]], tagged: false);
    }

    /// <summary>
    /// With all 4096 arena indices in use, one arena all free: an allocation takes its pages. While a release unmaps
    /// it, its pages are off the lists; if its index is given back only after the munmap, an allocation then finds no
    /// page and no index and throws OutOfMemoryException, a write refused for want of memory while a whole arena is
    /// free. The arena is made resident (faulted in behind the source's back) so that its munmap takes long enough to
    /// allocate during it (ten tries that catch the release unfinished).
    /// </summary>
    [Fact]
    public void At_the_arena_limit_an_allocation_during_a_release_finds_the_released_index()
    {
        using var pages = new PageSource();
        // Arenas 0 and 1 take turns: the one whose index serves again is the newest after, which is never released.
        List<int>[] runsOf = [[], []];
        while (true)
        {
            try
            {
                int head = pages.AllocateRun(16, out _);
                if (head >> PageSource.ArenaPageShift < 2)
                {
                    runsOf[head >> PageSource.ArenaPageShift].Add(head);
                }
            }
            catch (OutOfMemoryException)
            {
                break;
            }
        }

        Assert.True(pages.ArenaCount == PageSource.MaxArenas, $"only {pages.ArenaCount} arenas mapped before the first failure");
        var gate = Field<Lock>(pages, "_lock");
        int[]?[] owners = Field<int[]?[]>(pages, "_owners");
        int caughtCount = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int attempt = 0; attempt < 200 || clock.Elapsed < AttemptsFor; attempt++)
        {
            // Arena a all free again; every other arena full.
            int a = attempt % 2;
            List<int> first = runsOf[a];
            pages.FreeRuns(first.Select(head => new PageRun(head, 16, 0)).ToArray());
            // Faulted in again behind the source's back, so that the munmap has 64 MiB to free: a window to catch it in.
            for (int page = a << PageSource.ArenaPageShift; page < (a + 1) << PageSource.ArenaPageShift; page++)
            {
                Marshal.WriteByte(pages.PageAddress(page), 1);
            }

            Exception? thrown = null;
            var release = new Thread(() =>
            {
                try
                {
                    pages.ReleaseEmptyArenas();
                }
                catch (Exception e)
                {
                    thrown = e;
                }
            });

            release.Start();
            while (Volatile.Read(ref owners[a]) != null || !gate.TryEnter())
            {
                if (release.Join(0))
                {
                    break;
                }
            }

            // Counted out (its owner map gone), and the release not done: it is unmapping (or, rarely, returning: hence
            // several tries).
            bool caught = gate.IsHeldByCurrentThread && !release.Join(0);
            int run = -1;
            try
            {
                if (caught)
                {
                    // The release has counted the arena out; it is in its munmap, or past it.
                    Thread.Sleep(20);
                }

                run = pages.AllocateRun(16, out _);
            }
            catch (OutOfMemoryException e)
            {
                Assert.Fail($"an allocation during the release of arena {a} (all free) failed: {e.Message}");
            }
            finally
            {
                if (gate.IsHeldByCurrentThread)
                {
                    gate.Exit();
                }
            }

            release.Join();
            Assert.Null(thrown);
            Assert.Equal(a, run >> PageSource.ArenaPageShift);
            // Still mapped once the release is done (MADV_NORMAL fails on an unmapped range): it unmapped the old range only.
            Assert.Equal(0, Interop.Libc.Madvise(pages.PageAddress(run), 16 * PageSource.PageSize, 0));
            Marshal.WriteInt32(pages.PageAddress(run), run);
            first.Clear();
            first.Add(run);
            for (int i = 1; i < PageSource.PagesPerArena / 16; i++)
            {
                first.Add(pages.AllocateRun(16, out _));
            }

            Assert.All(first, head => Assert.Equal(a, head >> PageSource.ArenaPageShift));
            caughtCount += caught ? 1 : 0;
            if (caughtCount == 10)
            {
                return;
            }
        }

        Assert.Fail($"the release was caught unfinished only {caughtCount} times in {clock.Elapsed}");
    }

    internal static void CheckConservation(PageSource pages, List<(int Head, int Pages)> held, bool tagged = true)
    {
        HashSet<int> listed = PageSourceInspector.Check(pages);
        long heldPages = 0;
        int[]?[] owners = Field<int[]?[]>(pages, "_owners");
        nint[] bases = Field<nint[]>(pages, "_arenaBase");
        foreach ((int head, int length) in held)
        {
            Assert.True(owners[head >> PageSource.ArenaPageShift] != null, $"held run at {head} in a released arena");
            for (int page = head; page < head + length; page++)
            {
                Assert.DoesNotContain(page, listed);
            }

            if (tagged)
            {
                Assert.Equal(head, Marshal.ReadInt32(pages.PageAddress(head)));
            }

            heldPages += length;
        }

        int mapped = 0;
        for (int arena = 0; arena < pages.ArenaIndexLimit; arena++)
        {
            Assert.Equal(owners[arena] != null, bases[arena] != 0);
            mapped += owners[arena] != null ? 1 : 0;
        }

        Assert.Equal(mapped, pages.ArenaCount);
        Assert.Equal((long)mapped * PageSource.PagesPerArena * sizeof(int), pages.MetadataBytes);
        Assert.Equal(heldPages, pages.PagesInUse);
        Assert.Equal((long)mapped * PageSource.PagesPerArena, heldPages + listed.Count);
        int released = Field<int>(pages, "_releasedCount");
        Assert.Equal(pages.ArenaIndexLimit - mapped, released);
    }
}
