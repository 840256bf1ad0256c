using ZramDaemon.Device.Writeback;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>The backing file alone: block allocation, reads and writes, freeing, the daily limit's window.</summary>
public sealed class BackingFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-backing-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>At exit the device deletes its file, and only its own: a file put at the path since (the old one renamed
    /// or deleted, another one made there) is someone else's and stays.</summary>
    [Fact]
    public void Disposing_deletes_the_file_it_made_and_not_one_that_replaced_it()
    {
        string path = Path.Combine(_dir, "f");
        new BackingFile(path, 4, 0).Dispose();
        Assert.False(File.Exists(path), "the device's own file was left behind");

        var file = new BackingFile(path, 4, 0);
        File.Move(path, path + ".old");
        File.WriteAllText(path, "someone else's");
        file.Dispose();
        Assert.Equal("someone else's", File.ReadAllText(path));
    }

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

    /// <summary>
    /// A slot's block given back (FreeLater) leaves bd_count at once but keeps its bit, and its data, until PunchFreed,
    /// which punches each run of neighbouring blocks with one fallocate and leaves the blocks between runs alone (a
    /// reset of 102,400 written-back pages, punched one at a time, took 14 s).
    /// </summary>
    [Fact]
    public void Blocks_given_back_are_punched_in_runs_and_their_neighbours_kept()
    {
        using var file = new BackingFile(Path.Combine(_dir, "f"), 200, 0);
        var page = new byte[BackingFile.BlockSize];
        for (int i = 0; i < 200; i++)
        {
            Assert.Equal(i, file.Allocate());
            page.AsSpan().Fill((byte)(i + 1));
            file.Write(i, page);
        }

        long[] kept = [63, 64, 130];
        for (long block = 0; block < 200; block++)
        {
            if (!kept.Contains(block))
            {
                file.FreeLater(block);
            }
        }

        Assert.Equal(kept.Length, file.Count);
        Assert.Equal(200 - kept.Length, file.FreedUnpunched);
        Assert.Throws<InvalidOperationException>(() => file.FreeLater(5));
        Assert.True(file.Read(5, page));
        Assert.Equal(6, page[4095]); // not punched yet

        long punches = file.Punches;
        file.PunchFreed();
        Assert.Equal(3, file.Punches - punches); // 0-62, 65-129, 131-199
        Assert.Equal((3L, 0L), (file.Count, file.FreedUnpunched));
        for (long block = 0; block < 200; block++)
        {
            Assert.True(file.Read(block, page));
            byte expected = kept.Contains(block) ? (byte)(block + 1) : (byte)0;
            Assert.True(page.AsSpan().IndexOfAnyExcept(expected) < 0, $"block {block} reads {page[0]}, not {expected}");
        }

        Assert.Throws<InvalidOperationException>(() => file.FreeLater(5)); // free since the punch

        // Every block but the kept ones is free again; once all are taken, a block given back is punched and reused.
        var taken = new HashSet<long>();
        for (int i = 0; i < 197; i++)
        {
            Assert.True(taken.Add(file.Allocate()));
        }

        Assert.DoesNotContain(taken, kept.Contains);
        file.FreeLater(64);
        Assert.Equal(64, file.Allocate());
        Assert.Equal(0, file.FreedUnpunched);
        Assert.True(file.Read(64, page));
        Assert.True(page.AsSpan().IndexOfAnyExcept((byte)0) < 0, "block 64 was handed out again with its old data");
        Assert.Equal(-1, file.Allocate());
    }

    /// <summary>Runs of every shape (crossing words, whole words, the last partial word): one punch a run, the freed
    /// blocks read as zeros and are handed out again, the others keep their data.</summary>
    [Fact]
    public void Runs_of_every_shape_are_punched_exactly()
    {
        var random = new Random(42);
        var page = new byte[BackingFile.BlockSize];
        foreach (int n in new[] { 64, 65, 127, 128, 129, 257 })
        {
            for (int trial = 0; trial < 9; trial++)
            {
                using var file = new BackingFile(Path.Combine(_dir, $"r{n}-{trial}"), n, 0);
                var freed = new bool[n];
                for (int i = 0; i < n; i++)
                {
                    Assert.Equal(i, file.Allocate());
                    page.AsSpan().Fill((byte)((i % 250) + 1));
                    file.Write(i, page);
                    freed[i] = (trial % 3) switch
                    {
                        0 => random.Next(2) == 0,
                        1 => random.Next(10) != 0,
                        _ => (i / 64) % 2 == 0 || i == n - 1,
                    };
                }

                int runs = Enumerable.Range(0, n).Count(i => freed[i] && (i == 0 || !freed[i - 1]));
                for (int i = 0; i < n; i++)
                {
                    if (freed[i])
                    {
                        file.FreeLater(i);
                    }
                }

                long punches = file.Punches;
                file.PunchFreed();
                Assert.Equal(runs, file.Punches - punches);
                for (int i = 0; i < n; i++)
                {
                    Assert.True(file.Read(i, page));
                    byte expected = freed[i] ? (byte)0 : (byte)((i % 250) + 1);
                    Assert.True(page.AsSpan().IndexOfAnyExcept(expected) < 0, $"{n} blocks, trial {trial}: block {i}");
                }

                Assert.Equal(freed.Count(f => !f), file.Count);
                var again = new HashSet<long>();
                for (long block; (block = file.Allocate()) >= 0;)
                {
                    Assert.True(freed[block] && again.Add(block), $"block {block} handed out though in use");
                }

                Assert.Equal(freed.Count(f => f), again.Count);
            }
        }
    }

    /// <summary>A block freed twice while a punch of it is under way is still caught: its mark stays until its run is
    /// punched. (It used to be taken off first: the second free passed, and the block, free and marked, was punched
    /// again under its next owner; a review's probe lost a written block so.)</summary>
    [Fact]
    public void A_block_freed_twice_during_its_punch_is_caught()
    {
        using var file = new BackingFile(Path.Combine(_dir, "f"), 4096, 0);
        for (int round = 0; round < 1000; round++)
        {
            var blocks = new long[64];
            for (int i = 0; i < blocks.Length; i++)
            {
                blocks[i] = file.Allocate();
            }

            foreach (long block in blocks)
            {
                file.FreeLater(block);
            }

            var punch = new Thread(file.PunchFreed);
            punch.Start();
            while (punch.IsAlive)
            {
                Assert.Throws<InvalidOperationException>(() => file.FreeLater(blocks[^1]));
            }

            punch.Join();
            Assert.Equal((0L, 0L), (file.Count, file.FreedUnpunched));
        }
    }

    /// <summary>Writers allocate, write, check and give back blocks while a thread punches all the time: no block in use
    /// loses its data, and at the end every block is free.</summary>
    [Fact]
    public void Blocks_in_use_keep_their_data_while_others_are_punched_beside_them()
    {
        const int blocks = 300;
        using var file = new BackingFile(Path.Combine(_dir, "g"), blocks, 0);
        long until = Environment.TickCount64 + 3000;
        int damaged = 0;
        var puncher = new Thread(() =>
        {
            while (Environment.TickCount64 < until)
            {
                file.PunchFreed();
            }
        });
        Thread[] writers = [.. Enumerable.Range(0, 2).Select(id => new Thread(() =>
        {
            var random = new Random(id);
            var mine = new Queue<(long Block, byte Fill)>();
            var page = new byte[BackingFile.BlockSize];
            while (Environment.TickCount64 < until)
            {
                if (mine.Count < 100 && random.Next(2) == 0)
                {
                    long block = file.Allocate();
                    if (block >= 0)
                    {
                        byte fill = (byte)random.Next(1, 255);
                        page.AsSpan().Fill(fill);
                        file.Write(block, page);
                        mine.Enqueue((block, fill));
                    }
                }
                else if (mine.Count > 0)
                {
                    foreach ((long block, byte fill) in mine)
                    {
                        file.Read(block, page);
                        if (page.AsSpan().IndexOfAnyExcept(fill) >= 0)
                        {
                            Interlocked.Increment(ref damaged);
                        }
                    }

                    file.FreeLater(mine.Dequeue().Block);
                }
            }

            foreach ((long block, _) in mine)
            {
                file.FreeLater(block);
            }
        }))];
        puncher.Start();
        foreach (Thread writer in writers)
        {
            writer.Start();
        }

        foreach (Thread writer in writers)
        {
            writer.Join();
        }

        puncher.Join();
        file.PunchFreed();
        Assert.Equal(0, damaged);
        Assert.Equal((0L, 0L), (file.Count, file.FreedUnpunched));
        for (int i = 0; i < blocks; i++)
        {
            Assert.True(file.Allocate() >= 0);
        }

        Assert.Equal(-1, file.Allocate());
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

    /// <summary>The file is locked before anything in it is cut: a second open of it (here through a hard link, as
    /// another zramd's would be) is refused with <see cref="BackingFileInUseException"/> and the first's blocks stay.
    /// A file nobody holds is emptied and made 0600 as before.</summary>
    [Fact]
    public void A_file_another_open_holds_is_refused_and_left_whole_and_one_nobody_holds_is_emptied()
    {
        string path = Path.Combine(_dir, "f");
        using var first = new BackingFile(path, 16, 0);
        long block = first.Allocate();
        first.Write(block, "written back"u8);
        string link = Path.Combine(_dir, "link");
        Daemon.ClientTool.Run("ln", [path, link]).EnsureSuccess();

        var e = Assert.Throws<BackingFileInUseException>(() => new BackingFile(link, 16, 0));
        Assert.Equal($"{link}: {BackingFileInUseException.Reason}", e.Message);
        var back = new byte[12];
        Assert.True(first.Read(block, back));
        Assert.Equal("written back"u8.ToArray(), back);
        Assert.Equal((16 * BackingFile.BlockSize) + BackingFile.Trailer.Length, new FileInfo(path).Length);

        // What a zramd that died left (a copy of a live one's file): emptied and taken.
        string old = Path.Combine(_dir, "old");
        Daemon.ClientTool.Run("cp", [path, old]).EnsureSuccess();
        File.SetUnixFileMode(old, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        using (var fresh = new BackingFile(old, 2, 0))
        {
            // Read by another tool: a FileStream here would ask for the lock the device holds.
            Assert.Equal((2 * BackingFile.BlockSize) + BackingFile.Trailer.Length, new FileInfo(old).Length);
            Daemon.ClientTool.Run("cmp", ["-n", (2 * BackingFile.BlockSize).ToString(System.Globalization.CultureInfo.InvariantCulture), old, "/dev/zero"]).EnsureSuccess();
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(old));
        }

        Assert.False(File.Exists(old), "the file is deleted with the device");
    }

    /// <summary>A file at the path that no zramd made is refused whole, not emptied (and deleted at exit): one with
    /// data, the same through a symlink (a probe lost /etc/passwd that way), one of a zramd's size but not its trailer,
    /// and what is not a regular file (a FIFO: an unhandled NotSupportedException ended the start). An empty file, or
    /// none, is taken.</summary>
    [Fact]
    public void A_file_no_zramd_made_is_refused_whole()
    {
        string kept = Path.Combine(_dir, "notes.txt");
        File.WriteAllText(kept, "someone's data");
        string link = Path.Combine(_dir, "link.wb");
        File.CreateSymbolicLink(link, kept);
        string sized = Path.Combine(_dir, "sized.wb");
        File.WriteAllBytes(sized, new byte[(2 * BackingFile.BlockSize) + BackingFile.Trailer.Length]);
        string fifo = Path.Combine(_dir, "fifo");
        Daemon.ClientTool.Run("mkfifo", [fifo]).EnsureSuccess();

        foreach (string path in new[] { kept, link, sized })
        {
            var e = Assert.Throws<IOException>(() => new BackingFile(path, 2, 0));
            Assert.Contains("is not a zramd writeback file", e.Message, StringComparison.Ordinal);
        }

        Assert.Contains("is not a regular file", Assert.Throws<IOException>(() => new BackingFile(fifo, 2, 0)).Message, StringComparison.Ordinal);
        Assert.Equal("someone's data", File.ReadAllText(kept));
        Assert.True(File.Exists(link) && File.Exists(sized) && File.Exists(fifo));
        Assert.Equal((2 * BackingFile.BlockSize) + BackingFile.Trailer.Length, new FileInfo(sized).Length);

        string empty = Path.Combine(_dir, "empty.wb");
        File.WriteAllBytes(empty, []);
        using (var taken = new BackingFile(empty, 2, 0))
        {
            Assert.True(taken.Allocate() >= 0);
        }

        Assert.False(File.Exists(empty));

        // Empty, but another user's (who could read what is written), or with a second name (which keeps it after
        // exit): refused too.
        string others = Path.Combine(_dir, "others.wb");
        File.WriteAllBytes(others, []);
        Daemon.ClientTool.Run("chown", ["65534", others]).EnsureSuccess();
        Assert.Contains("belongs to another user (uid 65534)", Assert.Throws<IOException>(() => new BackingFile(others, 2, 0)).Message, StringComparison.Ordinal);
        string linked = Path.Combine(_dir, "linked.wb");
        File.WriteAllBytes(linked, []);
        Daemon.ClientTool.Run("ln", [linked, Path.Combine(_dir, "second-name")]).EnsureSuccess();
        Assert.Contains("under other names too", Assert.Throws<IOException>(() => new BackingFile(linked, 2, 0)).Message, StringComparison.Ordinal);
    }

    /// <summary>On a filesystem with no room for the trailer's block, the file is made unmarked (its writes fail until
    /// there is room, as before the trailer) rather than failing the device's start, and says so.</summary>
    [Fact]
    public void On_a_full_filesystem_the_file_is_made_without_its_trailer()
    {
        using var tmpfs = new SmallTmpfs("zramd-full-");
        tmpfs.AssertMounted();
        using (var fill = new FileStream(Path.Combine(tmpfs.Dir, "filler"), FileMode.Create))
        {
            Assert.Throws<IOException>(() =>
            {
                for (int i = 0; i < 1024; i++)
                {
                    fill.Write(new byte[BackingFile.BlockSize]);
                    fill.Flush();
                }
            });
        }

        string path = Path.Combine(tmpfs.Dir, "zram0.wb");
        using (var file = new BackingFile(path, 4, 0))
        {
            Assert.True(file.Unmarked);
            Assert.Equal(4 * BackingFile.BlockSize, new FileInfo(path).Length);
            Assert.Throws<IOException>(() => file.Write(file.Allocate(), "no room"u8));
        }

        Assert.False(File.Exists(path));
    }

    /// <summary>Whether freed blocks can be punched out is found at start (so that the device warns once): tmpfs can,
    /// ramfs cannot.</summary>
    [Fact]
    public void Whether_the_filesystem_punches_holes_is_known_at_start()
    {
        using (var file = new BackingFile(Path.Combine(_dir, "holes.wb"), 4, 0))
        {
            Assert.True(file.PunchesHoles);
        }

        string ramfs = Directory.CreateDirectory(Path.Combine(_dir, "ramfs")).FullName;
        Daemon.ClientTool.Run("mount", ["-t", "ramfs", "ramfs", ramfs]).EnsureSuccess();
        try
        {
            using var file = new BackingFile(Path.Combine(ramfs, "zram0.wb"), 4, 0);
            Assert.False(file.PunchesHoles);
        }
        finally
        {
            Daemon.ClientTool.Run("umount", [ramfs]).EnsureSuccess();
        }
    }

    /// <summary>A symlink at the path (an admin's way to put the file on another disk) is followed, and exit deletes
    /// the file it made there, not the link, which the next start follows again: exit used to delete the link alone
    /// and leave the file, with the pages it held, and the next start made a new file beside the link's old target.</summary>
    [Fact]
    public void Through_a_symlink_the_file_is_made_at_its_target_and_deleted_there()
    {
        string disk = Directory.CreateDirectory(Path.Combine(_dir, "other-disk")).FullName;
        string target = Path.Combine(disk, "zram0.wb");
        string link = Path.Combine(_dir, "zram0.wb");
        File.CreateSymbolicLink(link, target);
        for (int run = 0; run < 2; run++)
        {
            using (var file = new BackingFile(link, 4, 0))
            {
                Assert.Equal(target, file.FilePath);
                Assert.Equal((4 * BackingFile.BlockSize) + BackingFile.Trailer.Length, new FileInfo(target).Length);
            }

            Assert.False(File.Exists(target), "the file made through the link was left behind");
            Assert.Equal(target, new FileInfo(link).LinkTarget);
        }
    }

    [Fact]
    public void The_daily_limit_allows_so_many_pages_per_24_hours()
    {
        long now = 1000;
        using var file = new BackingFile(Path.Combine(_dir, "f"), 16, 3 * BackingFile.BlockSize, () => now);
        Assert.True(file.TryTakeBudget(out _));
        Assert.True(file.TryTakeBudget(out _));
        Assert.True(file.TryTakeBudget(out _));
        Assert.False(file.TryTakeBudget(out _));
        Assert.Equal(0, file.BudgetLeft);
        now += (24 * 3600) - 1;
        Assert.False(file.TryTakeBudget(out _));
        now += 1;
        Assert.Equal(3 * BackingFile.BlockSize, file.BudgetLeft);
        Assert.True(file.TryTakeBudget(out _));
    }

    /// <summary>A page taken from one day's window and given back after the window rolled (a batch's slot that changed
    /// before its write, settled after the roll) goes nowhere: given to the new window, it let that one write a page past
    /// its limit, a batch's worth at each roll. Given back within its window, it is that window's again.</summary>
    [Fact]
    public void A_page_given_back_after_its_window_ended_does_not_raise_the_new_windows_budget()
    {
        long now = 1000;
        using var file = new BackingFile(Path.Combine(_dir, "f"), 16, 3 * BackingFile.BlockSize, () => now);
        Assert.True(file.TryTakeBudget(out long yesterday));
        Assert.True(file.TryTakeBudget(out _));
        Assert.True(file.TryTakeBudget(out _));
        now += 24 * 3600;
        Assert.True(file.TryTakeBudget(out long today));
        Assert.Equal(2 * BackingFile.BlockSize, file.BudgetLeft);

        file.ReturnBudget(yesterday);
        Assert.Equal(2 * BackingFile.BlockSize, file.BudgetLeft);
        Assert.Equal(BackingFile.BlockSize, file.WrittenToday);

        file.ReturnBudget(today);
        Assert.Equal(3 * BackingFile.BlockSize, file.BudgetLeft);
        Assert.Equal(0, file.WrittenToday);
    }
}
