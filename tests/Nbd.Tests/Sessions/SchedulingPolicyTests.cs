using System.Globalization;
using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Tests.Devices;
using Nbd.Tests.Interop;

namespace Nbd.Tests.Sessions;

/// <summary>
/// A serving thread waits under SCHED_BATCH while other requests of its connection are in flight (so that, woken,
/// it does not preempt a client that is still queueing requests), and under SCHED_OTHER at queue depth 1 (so that a
/// client waiting on each reply is served at once on a busy machine). Read from /proc/self/task/TID/stat, field 41.
/// </summary>
public sealed class SchedulingPolicyTests
{
    private const int Block = 4096;
    private const int SchedOther = 0;
    private const int SchedBatch = 3;

    [Fact]
    public async Task Threads_that_finish_behind_a_running_request_wait_under_sched_batch_and_depth_1_returns_to_sched_other()
    {
        var gated = new TidRecordingGate(new MemoryBlockDevice(16 << 20));
        await using var server = new TestServer(new NbdServerOptions { WorkerThreadsPerConnection = 4 }, new NbdExport("mem", "gated", gated));
        using RawClient client = await server.ConnectRawAsync();

        // A read held in the device, then writes answered behind it: their threads finish with it still in flight.
        await HoldReadAsync(client, gated);

        byte[] payload = new byte[Block];
        payload[5] = 5;
        for (int i = 0; i < 20; i++)
        {
            await client.SendRequestAsync(CommandType.Write, (ulong)(100 + i), Block, Block, 0, payload);
            Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync().WaitAsync(Poll.Patience))!.Value.Error);
        }

        Assert.True(await Poll.UntilAsync(() => gated.Served.Any(tid => PolicyOf(tid) == SchedBatch)),
            "no serving thread went to SCHED_BATCH with a request in flight behind it");

        // The held read finishes last, alone: its thread goes back to SCHED_OTHER.
        gated.Open();
        Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync(Block).WaitAsync(Poll.Patience))!.Value.Error);
        int reader = gated.ReaderTid;
        Assert.True(await Poll.UntilAsync(() => PolicyOf(reader) == SchedOther), $"thread {reader} stayed at policy {PolicyOf(reader)} after the last request");

        // Depth 1 from here: whoever serves a request finishes with nothing else in flight.
        for (int i = 0; i < 20; i++)
        {
            await client.SendRequestAsync(CommandType.Read, (ulong)(200 + i), Block, Block);
            Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync(Block).WaitAsync(Poll.Patience))!.Value.Error);
            int served = gated.ReaderTid;
            Assert.True(await Poll.UntilAsync(() => PolicyOf(served) == SchedOther), $"thread {served} stayed at policy {PolicyOf(served)} at depth 1");
        }
    }

    [Fact]
    public async Task Threads_that_finish_a_large_transfer_behind_a_running_request_stay_sched_other()
    {
        var gated = new TidRecordingGate(new MemoryBlockDevice(16 << 20));
        await using var server = new TestServer(new NbdServerOptions { WorkerThreadsPerConnection = 4 }, new NbdExport("mem", "gated", gated));
        using RawClient client = await server.ConnectRawAsync();
        await HoldReadAsync(client, gated);

        // Writes just over the limit, answered behind the held read: their threads wait under SCHED_OTHER.
        const int Large = 32 * 1024 + 512;
        byte[] payload = new byte[Large];
        payload[7] = 7;
        for (int i = 0; i < 20; i++)
        {
            await client.SendRequestAsync(CommandType.Write, (ulong)(100 + i), (ulong)(i + 1) * 65536, Large, 0, payload);
            Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync().WaitAsync(Poll.Patience))!.Value.Error);
        }

        await Task.Delay(200);
        int[] writers = gated.Served.ToArray();
        Assert.NotEmpty(writers);
        Assert.All(writers, tid => Assert.Equal(SchedOther, PolicyOf(tid)));

        // And a 32 KiB one (not more than the limit) is a small request: its thread goes to SCHED_BATCH.
        await client.SendRequestAsync(CommandType.Write, 200, 0, 32 * 1024, 0, payload.AsSpan(0, 32 * 1024).ToArray());
        Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync().WaitAsync(Poll.Patience))!.Value.Error);
        Assert.True(await Poll.UntilAsync(() => gated.Served.Any(tid => PolicyOf(tid) == SchedBatch)),
            "the thread of a 32 KiB write behind a running request did not go to SCHED_BATCH");
        gated.Open();
        Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync(Block).WaitAsync(Poll.Patience))!.Value.Error);
    }

    [Fact]
    public async Task At_depth_1_a_request_served_while_the_last_replys_writer_is_held_after_its_write_stays_sched_other()
    {
        // The writer of a reply is held after its write returned, before it counts the reply done: as a writer
        // preempted by the client it woke is. The client, at depth 1, sends its next request meanwhile.
        using var held = new ManualResetEventSlim(false);
        using var release = new ManualResetEventSlim(false);
        int armed = 0;
        int writer = 0;
        var gated = new TidRecordingGate(new MemoryBlockDevice(16 << 20));
        var options = new NbdServerOptions
        {
            WorkerThreadsPerConnection = 4,
            KeepReadTurnGate = () => false, // hand the turn on, so that another thread reads while the writer is held
            RepliesWritten = sent =>
            {
                // Only the write that carries request 100's reply: the write of an earlier one may reach the hook
                // late (its thread preempted after the write), and holding it would hold the send turn before 100.
                if (Volatile.Read(ref armed) == 1 && CarriesSimpleReply(sent, 100) && Interlocked.Exchange(ref armed, 0) == 1)
                {
                    Volatile.Write(ref writer, gated.CurrentTid());
                    held.Set();
                    release.Wait(Poll.Patience);
                }
            },
        };
        await using var server = new TestServer(options, new NbdExport("mem", "gated", gated));
        using RawClient client = await server.ConnectRawAsync();
        byte[] payload = new byte[Block];
        payload[3] = 3;

        try
        {
            for (int i = 0; i < 8; i++)
            {
                await client.SendRequestAsync(CommandType.Write, (ulong)(10 + i), Block, Block, 0, payload);
                Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync().WaitAsync(Poll.Patience))!.Value.Error);
            }

            Volatile.Write(ref armed, 1);
            await client.SendRequestAsync(CommandType.Write, 100, Block, Block, 0, payload);
            Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync().WaitAsync(Poll.Patience))!.Value.Error);
            Assert.True(held.Wait(Poll.Patience), "the reply's writer never reached the hook");

            int before = gated.Requests;
            await client.SendRequestAsync(CommandType.Write, 101, 2 * Block, Block, 0, payload);
            Assert.True(await Poll.UntilAsync(() => gated.Requests > before), "the next request was not served");
            int served = gated.LastTid;
            Assert.NotEqual(Volatile.Read(ref writer), served);

            // Its thread finishes with the held reply still counted in flight: it must not take that for depth > 1.
            for (int i = 0; i < 30; i++)
            {
                Assert.NotEqual(SchedBatch, PolicyOf(served));
                await Task.Delay(10);
            }
        }
        finally
        {
            release.Set();
        }

        Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync().WaitAsync(Poll.Patience))!.Value.Error);
    }

    [Fact]
    public async Task With_batch_scheduling_off_no_serving_thread_leaves_sched_other()
    {
        var gated = new TidRecordingGate(new MemoryBlockDevice(16 << 20));
        await using var server = new TestServer(new NbdServerOptions { WorkerThreadsPerConnection = 4, BatchSchedulingWhenBusy = false }, new NbdExport("mem", "gated", gated));
        using RawClient client = await server.ConnectRawAsync();
        await HoldReadAsync(client, gated);

        byte[] payload = new byte[Block];
        for (int i = 0; i < 20; i++)
        {
            await client.SendRequestAsync(CommandType.Write, (ulong)(100 + i), Block, Block, 0, payload);
            Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync().WaitAsync(Poll.Patience))!.Value.Error);
        }

        await Task.Delay(200);
        Assert.NotEmpty(gated.Served);
        Assert.All(gated.Served, tid => Assert.NotEqual(SchedBatch, PolicyOf(tid)));
        gated.Open();
        Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync(Block).WaitAsync(Poll.Patience))!.Value.Error);
    }

    /// <summary>Whether a batch of 16-byte simple replies holds the one to <paramref name="handle"/>.</summary>
    private static bool CarriesSimpleReply(ReadOnlySpan<byte> sent, ulong handle)
    {
        for (int at = 0; at + SimpleReply.Size <= sent.Length; at += SimpleReply.Size)
        {
            if (System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(sent[(at + 8)..]) == handle)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Sends a read (handle 1) at offset 0 and waits until the device holds it.</summary>
    private static async Task HoldReadAsync(RawClient client, TidRecordingGate gated)
    {
        await client.SendRequestAsync(CommandType.Read, 1, 0, Block);
        for (int i = 0; i < 3000 && gated.Waiting < 1; i++)
        {
            await Task.Delay(10);
        }
    }


    /// <summary>Field 41 of /proc/self/task/TID/stat (after the parenthesised name, field 3 comes first); -1 if gone.</summary>
    private static int PolicyOf(int tid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/self/task/{tid}/stat");
            string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return int.Parse(fields[41 - 3], CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return -1;
        }
    }

    /// <summary>A gate that also records the OS thread ids of the threads that served this connection's requests
    /// (other tests' servers run meanwhile, in this process), and of the last one that read.</summary>
    private sealed class TidRecordingGate(IBlockDevice inner) : IBlockDevice
    {
        private readonly GatedDevice _gate = new(inner);
        private readonly System.Collections.Concurrent.ConcurrentDictionary<int, bool> _served = new();
        private int _readerTid;
        private int _lastTid;
        private int _requests;

        public ICollection<int> Served => _served.Keys;

        public int Waiting => _gate.Waiting;

        public int ReaderTid => Volatile.Read(ref _readerTid);

        /// <summary>The thread that served the latest request.</summary>
        public int LastTid => Volatile.Read(ref _lastTid);

        /// <summary>Requests served so far (counted after <see cref="LastTid"/> is set).</summary>
        public int Requests => Volatile.Read(ref _requests);

        public long Size => inner.Size;

        public bool IsReadOnly => inner.IsReadOnly;

        public int MinimumBlockSize => inner.MinimumBlockSize;

        public int PreferredBlockSize => inner.PreferredBlockSize;

        public bool SupportsFastZero => inner.SupportsFastZero;

        public void Open() => _gate.Open();

        public NbdError Read(long offset, Span<byte> destination)
        {
            Volatile.Write(ref _readerTid, Record());
            return _gate.Read(offset, destination);
        }

        public NbdError Write(long offset, ReadOnlySpan<byte> source, bool fua)
        {
            Record();
            return inner.Write(offset, source, fua);
        }

        private int Record()
        {
            int tid = CurrentTid();
            _served[tid] = true;
            Volatile.Write(ref _lastTid, tid);
            Interlocked.Increment(ref _requests);
            return tid;
        }

        public int CurrentTid()
        {
            string self = File.ReadAllText("/proc/thread-self/stat");
            return int.Parse(self[..self.IndexOf(' ')], CultureInfo.InvariantCulture);
        }

        public NbdError Flush() => inner.Flush();

        public NbdError Trim(long offset, long length) => inner.Trim(offset, length);

        public NbdError WriteZeroes(long offset, long length, bool noHole, bool fastZero) => inner.WriteZeroes(offset, length, noHole, fastZero);

        public int GetExtents(long offset, long length, Span<BlockExtent> extents) => inner.GetExtents(offset, length, extents);
    }
}
