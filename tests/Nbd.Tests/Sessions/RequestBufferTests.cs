using System.Globalization;
using System.Net.Sockets;
using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Tests.Devices;
using Nbd.Tests.Interop;

namespace Nbd.Tests.Sessions;

[CollectionDefinition(nameof(ResidentMemoryCollection), DisableParallelization = true)]
public sealed class ResidentMemoryCollection;

/// <summary>
/// A connection's request buffers leave the process when the connection ends: a daemon that served a few clients
/// must not keep their buffers resident. Measured on the RSS of the whole test process (/proc/self/statm), so it
/// runs alone.
/// </summary>
[Collection(nameof(ResidentMemoryCollection))]
public sealed class RequestBufferTests
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

    private static long ResidentBytes()
    {
        // The whole process's RSS: first let the GC free and give back what earlier tests left (it did so during
        // the measurement once, and RSS "grew" by 10 MiB while 32 MiB of buffers were resident).
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();

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
