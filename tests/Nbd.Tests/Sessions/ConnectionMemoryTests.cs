using System.Globalization;
using System.Net.Sockets;
using Nbd.Devices;
using Nbd.Native;
using Nbd.Protocol;
using Nbd.Tests.Devices;
using Nbd.Tests.Interop;
using Xunit.Abstractions;

namespace Nbd.Tests.Sessions;

[CollectionDefinition(nameof(ResidentMemoryCollection), DisableParallelization = true)]
public sealed class ResidentMemoryCollection;

/// <summary>
/// A connection's buffers leave the process when the connection ends: a daemon that served a few clients, or a burst
/// of them, must not keep their buffers resident. Measured on the RSS of the whole test process (/proc/self/statm),
/// so it runs alone.
/// </summary>
[Collection(nameof(ResidentMemoryCollection))]
public sealed class ConnectionMemoryTests(ITestOutputHelper output)
{
    // The largest request whose buffer a thread keeps while its connection lasts (larger ones are unmapped after
    // their reply: DaemonRequestBufferTests).
    private const int Request = 4 << 20;
    private const int Threads = NbdServerOptions.DefaultWorkerThreadsPerConnection;

    [Fact]
    public async Task A_closed_connection_gives_its_request_buffers_back()
    {
        // Four 4 MiB reads held at the gate together: each of the connection's four threads has its buffer then,
        // and the device fills it (every page touched, so resident).
        var device = new GatedDevice(new FillingDevice((long)Threads * Request));
        await using var server = new TestServer(null, new NbdExport("mem", "filled", device));
        var reply = new byte[SimpleReply.Size + Request];
        Array.Fill(reply, (byte)1);
        long before = ResidentBytes();
        long during;
        using (RawClient client = await RawClient.ConnectAsync(server.SocketPath))
        {
            await client.StartAsync();
            Assert.Equal(OptionReplyType.Ack, (await client.GoAsync("mem")).Final);
            for (int i = 0; i < Threads; i++)
            {
                await client.SendRequestAsync(CommandType.Read, (ulong)i, (ulong)i * Request, Request);
            }

            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (device.Waiting < Threads && clock.Elapsed < TimeSpan.FromSeconds(30))
            {
                await Task.Delay(10);
            }

            Assert.Equal(Threads, device.Waiting);
            device.Open();
            Socket socket = client.Socket;
            socket.ReceiveTimeout = 60_000;
            for (int i = 0; i < Threads; i++)
            {
                Span<byte> rest = reply;
                while (!rest.IsEmpty)
                {
                    int n = socket.Receive(rest);
                    Assert.True(n > 0, "server closed the connection");
                    rest = rest[n..];
                }

                Assert.Equal(0x5A, reply[^1]);
            }

            during = ResidentBytes();
            Assert.True(during - before >= (Threads - 1) * (long)Request,
                $"RSS grew by {(during - before) >> 20} MiB while {Threads} threads held {Request >> 20} MiB requests");
            await client.SendRequestAsync(CommandType.Disconnect, 99, 0, 0);
        }

        var wait = System.Diagnostics.Stopwatch.StartNew();
        while (server.Server.ConnectionCount > 0 && wait.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(10);
        }

        Assert.Equal(0, server.Server.ConnectionCount);
        long after = ResidentBytes();
        Assert.True(during - after >= (Threads - 1) * (long)Request,
            $"RSS fell by only {(during - after) >> 20} MiB after the connection ended ({Threads} buffers of {Request >> 20} MiB)");
    }

    [Fact]
    public async Task A_burst_of_connections_leaves_neither_heap_garbage_nor_resident_memory_when_it_ends()
    {
        // Each connection writes and reads a block, so that its receive, send and queue buffers are all used. Not
        // collected after: the daemon idles without a GC, so what a connection leaves to the GC stays resident.
        // Measured here: about 36 KiB allocated a connection (threads, slots, sockets, the test's client) and RSS
        // 16-19 MiB higher after the 200; with the session's and the handshake's buffers as managed arrays (384 KiB),
        // 425 KiB and 36 MiB for 100; with only the handshake's 64 KiB array, 102 KiB and 30 MiB for 200.
        const int Connections = 200;
        await using var server = new TestServer(null, new NbdExport("mem", "mem", new MemoryBlockDevice(Connections * 4096)));
        await RunBurstAsync(server, 4); // code paths compiled, the runtime's pools primed
        long before = ResidentBytes();
        long mappedBefore = MappedBuffer.MappedCount;
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        await RunBurstAsync(server, Connections);
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        long after = ResidentBytes(collect: false);

        // A connection touches only a few pages of its mappings, so RSS would hardly show one left mapped: counted.
        Assert.True(MappedBuffer.MappedCount <= mappedBefore,
            $"{MappedBuffer.MappedCount - mappedBefore} buffers still mapped after {Connections} connections ended");
        output.WriteLine($"{Connections} connections: {allocated / Connections} bytes allocated each (server and test client), RSS {(after - before) / 1024} KiB higher after");
        Assert.True(allocated / Connections < 64 * 1024,
            $"{Connections} connections allocated {allocated / Connections} bytes of managed memory each");
        Assert.True(after - before < Connections * 160L * 1024,
            $"RSS is {(after - before) >> 10} KiB higher after {Connections} connections ended");
    }

    /// <summary>Opens <paramref name="connections"/> connections at once; each writes a block and reads it back, and
    /// all stay open until every one has; then all disconnect, and this waits until the server has ended them.</summary>
    private static async Task RunBurstAsync(TestServer server, int connections)
    {
        var clients = new RawClient[connections];
        try
        {
            await Task.WhenAll(Enumerable.Range(0, connections).Select(async i =>
            {
                RawClient client = await RawClient.ConnectAsync(server.SocketPath);
                clients[i] = client;
                await client.StartAsync();
                Assert.Equal(OptionReplyType.Ack, (await client.GoAsync("mem")).Final);
                byte[] block = new byte[4096];
                block[0] = (byte)i;
                await client.SendRequestAsync(CommandType.Write, 1, (ulong)i * 4096, 4096, 0, block);
                Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync())!.Value.Error);
                await client.SendRequestAsync(CommandType.Read, 2, (ulong)i * 4096, 4096);
                var read = (await client.ReadSimpleReplyAsync(4096))!.Value;
                Assert.Equal((byte)i, read.Data[0]);
            }));
            Assert.Equal(connections, server.Server.ConnectionCount);
            foreach (RawClient client in clients)
            {
                await client.SendRequestAsync(CommandType.Disconnect, 3, 0, 0);
            }
        }
        finally
        {
            foreach (RawClient? client in clients)
            {
                client?.Dispose();
            }
        }

        var wait = System.Diagnostics.Stopwatch.StartNew();
        while (server.Server.ConnectionCount > 0 && wait.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(10);
        }

        Assert.Equal(0, server.Server.ConnectionCount);
    }

    private static long ResidentBytes(bool collect = true)
    {
        if (!collect)
        {
            return StatmResidentBytes();
        }

        // The whole process's RSS: first let the GC free and give back what earlier tests left (it did so during
        // the measurement once, and RSS "grew" by 10 MiB while 32 MiB of buffers were resident).
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        return StatmResidentBytes();
    }

    private static long StatmResidentBytes()
    {
        // statm: size resident shared text lib data dt, in pages.
        string[] fields = File.ReadAllText("/proc/self/statm").Split(' ');
        return long.Parse(fields[1], CultureInfo.InvariantCulture) * Environment.SystemPageSize;
    }

    /// <summary>Reads fill the request's buffer with 0x5A (every page written); nothing is stored.</summary>
    private sealed class FillingDevice(long size) : IBlockDevice
    {
        public long Size => size;

        public bool IsReadOnly => false;

        public int MinimumBlockSize => 1;

        public int PreferredBlockSize => 4096;

        public bool SupportsFastZero => false;

        public NbdError Read(long offset, Span<byte> destination)
        {
            destination.Fill(0x5A);
            return NbdError.None;
        }

        public NbdError Write(long offset, ReadOnlySpan<byte> source, bool fua) => NbdError.None;

        public NbdError Flush() => NbdError.None;

        public NbdError Trim(long offset, long length) => NbdError.None;

        public NbdError WriteZeroes(long offset, long length, bool noHole, bool fastZero) => NbdError.None;

        public int GetExtents(long offset, long length, Span<BlockExtent> extents) => 0;
    }
}
