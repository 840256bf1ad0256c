using System.Net.Sockets;
using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Tests.Devices;
using Nbd.Tests.Interop;

namespace Nbd.Tests.Sessions;

/// <summary>
/// The request path allocates nothing on the managed heap. Measured on the server's own threads, which serve
/// this one connection and nothing else: the device below samples GC.GetAllocatedBytesForCurrentThread() on
/// whichever server thread calls it, and a thread's growth between its first and last sample of the measured
/// phase covers whole turns of its loop (read a request, run it, reply). Other tests running in parallel
/// allocate on other threads, so they cannot disturb the figure, and a thread that allocates even once per
/// request shows hundreds of kilobytes.
/// </summary>
public sealed class AllocationTests
{
    private const int Block = 4096;
    private const int Depth = 32;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Requests_allocate_nothing_on_the_managed_heap(bool structured)
    {
        var device = new SamplingDevice(new MemoryBlockDevice(16 << 20));
        await using var server = new TestServer(null, new NbdExport("mem", "sampled", device));
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        await client.StartAsync();
        if (structured)
        {
            await client.SendOptionAsync((uint)OptionType.StructuredReply, []);
            Assert.Equal(OptionReplyType.Ack, (await client.ReadOptionReplyAsync())!.Type);
        }

        Assert.Equal(OptionReplyType.Ack, (await client.GoAsync("mem")).Final);
        Socket socket = client.Socket;
        socket.ReceiveTimeout = 60_000;
        int readReply = (structured ? StructuredReply.OffsetDataPrefixSize : SimpleReply.Size) + Block;
        int writeReply = SimpleReply.Size; // a success without payload is a simple reply either way
        byte[] writes = Requests(CommandType.Write, Depth);
        byte[] reads = Requests(CommandType.Read, Depth);
        var replies = new byte[Depth * readReply];

        // Depth 1 (one request at a time) and depth 32 (every thread of the connection busy), writes and reads.
        void Round()
        {
            for (int i = 0; i < Depth; i++)
            {
                Exchange(socket, writes.AsSpan(i * (RequestHeader.Size + Block), RequestHeader.Size + Block), replies.AsSpan(0, writeReply));
                Exchange(socket, reads.AsSpan(i * RequestHeader.Size, RequestHeader.Size), replies.AsSpan(0, readReply));
            }

            Exchange(socket, writes, replies.AsSpan(0, Depth * writeReply));
            Exchange(socket, reads, replies.AsSpan(0, Depth * readReply));
        }

        // Warm-up: each thread's first requests rent its pool buffers, take its locks' wait events, run the JIT.
        for (int i = 0; i < 50; i++)
        {
            Round();
        }

        // A window of 100 rounds (12,800 requests) must allocate exactly 0 bytes. Up to five windows: something
        // the runtime does once, late (a lock's first wait, a tiering step), can land in one window on a loaded
        // machine, but an allocation on the request path recurs in every window.
        var windows = new List<(int Threads, long Requests, long Allocated)>();
        do
        {
            device.StartMeasuring();
            for (int i = 0; i < 100; i++)
            {
                Round();
            }

            windows.Add(device.StopMeasuring());
        }
        while (windows[^1].Allocated != 0 && windows.Count < 5);

        (int threads, long requests, long allocated) = windows[^1];
        Assert.True(threads >= 2, $"only {threads} server thread(s) ran requests");
        Assert.True(requests >= 100 * 4 * Depth, $"{requests} requests sampled");
        Assert.True(allocated == 0, "bytes allocated per window: " + string.Join(", ", windows.Select(w => w.Allocated)));
        Assert.Equal(Enumerable.Range(0, Block).Select(i => (byte)i), ReadBack(device, Block));
    }

    private static byte[] Requests(CommandType type, int count)
    {
        int size = RequestHeader.Size + (type == CommandType.Write ? Block : 0);
        var bytes = new byte[count * size];
        for (int i = 0; i < count; i++)
        {
            new RequestHeader(NbdMagic.Request, 0, type, (ulong)i, (ulong)(i * Block), Block).Write(bytes.AsSpan(i * size));
            if (type == CommandType.Write)
            {
                for (int j = 0; j < Block; j++)
                {
                    bytes[(i * size) + RequestHeader.Size + j] = (byte)j;
                }
            }
        }

        return bytes;
    }

    private static void Exchange(Socket socket, ReadOnlySpan<byte> requests, Span<byte> replies)
    {
        while (!requests.IsEmpty)
        {
            requests = requests[socket.Send(requests)..];
        }

        while (!replies.IsEmpty)
        {
            int n = socket.Receive(replies);
            Assert.True(n > 0, "server closed the connection");
            replies = replies[n..];
        }
    }

    private static byte[] ReadBack(IBlockDevice device, int length)
    {
        var buffer = new byte[length];
        Assert.Equal(NbdError.None, device.Read(Block, buffer));
        return buffer;
    }

    /// <summary>Samples the calling thread's allocation counter on every read and write while measuring; keeps
    /// the first and last sample per thread in fixed arrays, so sampling itself allocates nothing.</summary>
    private sealed class SamplingDevice(IBlockDevice inner) : IBlockDevice
    {
        private const int MaxThreads = 64;

        [ThreadStatic]
        private static int _threadIndex;

        private readonly long[] _first = new long[MaxThreads];
        private readonly long[] _last = new long[MaxThreads];
        private readonly long[] _samples = new long[MaxThreads];
        private int _threads;
        private volatile bool _measuring;

        public long Size => inner.Size;

        public bool IsReadOnly => inner.IsReadOnly;

        public int MinimumBlockSize => inner.MinimumBlockSize;

        public int PreferredBlockSize => inner.PreferredBlockSize;

        public bool SupportsFastZero => inner.SupportsFastZero;

        public void StartMeasuring()
        {
            Array.Clear(_samples);
            _measuring = true;
        }

        /// <summary>Threads sampled at least twice, their samples, and the bytes they allocated in between.</summary>
        public (int Threads, long Requests, long Allocated) StopMeasuring()
        {
            _measuring = false;
            int threads = 0;
            long requests = 0, allocated = 0;
            for (int i = 0; i < Volatile.Read(ref _threads); i++)
            {
                long samples = Volatile.Read(ref _samples[i]);
                requests += samples;
                if (samples >= 2)
                {
                    threads++;
                    allocated += _last[i] - _first[i];
                }
            }

            return (threads, requests, allocated);
        }

        public NbdError Read(long offset, Span<byte> destination)
        {
            Sample();
            return inner.Read(offset, destination);
        }

        public NbdError Write(long offset, ReadOnlySpan<byte> source, bool fua)
        {
            Sample();
            return inner.Write(offset, source, fua);
        }

        public NbdError Flush() => inner.Flush();

        public NbdError Trim(long offset, long length) => inner.Trim(offset, length);

        public NbdError WriteZeroes(long offset, long length, bool noHole, bool fastZero) => inner.WriteZeroes(offset, length, noHole, fastZero);

        public int GetExtents(long offset, long length, Span<BlockExtent> extents) => inner.GetExtents(offset, length, extents);

        private void Sample()
        {
            // The counter first, so that registering a new thread is not counted in its first sample's span.
            long now = GC.GetAllocatedBytesForCurrentThread();
            if (!_measuring)
            {
                return;
            }

            if (_threadIndex == 0)
            {
                _threadIndex = Interlocked.Increment(ref _threads);
            }

            int i = _threadIndex - 1;
            if (_samples[i]++ == 0)
            {
                _first[i] = now;
            }

            _last[i] = now;
        }
    }
}
