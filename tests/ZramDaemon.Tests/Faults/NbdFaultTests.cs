using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd;
using Nbd.Devices;
using Nbd.Protocol;
using Xunit.Abstractions;
using ZramDaemon.Device;
using ZramDaemon.Tests.Daemon;
using ZramDaemon.Tests.Device;

namespace ZramDaemon.Tests.Faults;

/// <summary>
/// Faults over real Unix sockets against the real server and a <see cref="ZramDevice"/>: clients that die in
/// the middle of a WRITE, thousands of connections dropped mid-handshake next to a client doing verified
/// I/O, and a memory limit reached through NBD. Each case checks the bytes, not just that nothing crashed.
/// </summary>
[Collection(FaultCollection.Name)]
public sealed class NbdFaultTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int Page = 4096;

    private readonly string _directory = Path.Combine(Path.GetTempPath(), "zram-fault-" + Guid.NewGuid().ToString("N")[..12]);
    private ServedZramDevice? _served;

    private ServedZramDevice Served => _served ?? throw new InvalidOperationException("Start the device first.");

    private string SocketPath => Path.Combine(_directory, "nbd.sock");

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (_served is not null)
        {
            await _served.DisposeAsync();
        }

        Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public async Task A_client_killed_in_the_middle_of_a_write_changes_no_block()
    {
        Start(new ZramDeviceOptions { Name = "zram0", DiskSize = 16L << 20 });
        var random = new Random(11);
        byte[] before = new byte[256 * 1024];
        random.NextBytes(before);
        using WireClient owner = await WireClient.OpenAsync(SocketPath, "zram0");
        for (int i = 0; i < before.Length; i += 64 * 1024)
        {
            Assert.Equal(NbdError.None, await owner.WriteAsync(i, before[i..(i + (64 * 1024))]));
        }

        // Cut points: inside the header, right after it, one byte into the payload, mid-page, one byte short.
        int[] cuts = [10, RequestHeader.Size, RequestHeader.Size + 1, RequestHeader.Size + 6000, RequestHeader.Size + (64 * 1024) - 1];
        foreach (int cut in cuts)
        {
            using WireClient victim = await WireClient.OpenAsync(SocketPath, "zram0");
            byte[] payload = new byte[64 * 1024];
            payload.AsSpan().Fill(0xEE);
            byte[] request = [.. WireClient.Header(CommandType.Write, 9, 8192, payload.Length), .. payload];
            await victim.SendAsync(request[..cut]);
            victim.Kill();
            await WaitForConnectionsAsync(1);
            byte[] after = await owner.ReadAsync(0, before.Length);
            Assert.True(before.AsSpan().SequenceEqual(after), $"a write cut at byte {cut} of {request.Length} changed the device");
        }

        ZramStats stats = Served.Device.GetStats();
        Assert.Equal(0, stats.FailedWrites + stats.InvalidIo);
        Assert.Equal(before.Length, stats.OrigDataSize);
    }

    [Fact]
    public async Task Thousands_of_connections_dropped_mid_handshake_leave_a_working_client_and_no_memory_behind()
    {
        Start(new ZramDeviceOptions { Name = "zram0", DiskSize = 16L << 20 });
        using WireClient witness = await WireClient.OpenAsync(SocketPath, "zram0");
        byte[] go = WireClient.GoOption("zram0");
        await DropConnectionsAsync(go, 200, new Random(1)); // warm up pools and JIT before the idle figure
        (long heapIdle, long rssIdle) = MemoryNow();

        using var stop = new CancellationTokenSource();
        Task<int> io = VerifiedIoAsync(witness, stop.Token);
        var clock = Stopwatch.StartNew();
        const int connections = 3000;
        await DropConnectionsAsync(go, connections, new Random(2));
        TimeSpan dropping = clock.Elapsed;
        await stop.CancelAsync();
        int verified = await io;
        await WaitForConnectionsAsync(1);

        (long heapAfter, long rssAfter) = MemoryNow();
        output.WriteLine($"{connections} dropped connections in {dropping.TotalSeconds:F1} s; witness verified {verified} writes meanwhile; " +
            $"managed heap {heapIdle >> 10} -> {heapAfter >> 10} KiB, RSS {rssIdle >> 20} -> {rssAfter >> 20} MiB");
        Assert.True(verified > 0, "the witness did no I/O while the connections were dropped");
        Assert.True(heapAfter - heapIdle < 16 << 20, $"managed heap {heapIdle >> 10} -> {heapAfter >> 10} KiB");
        Assert.True(rssAfter - rssIdle < 128 << 20, $"RSS {rssIdle >> 20} -> {rssAfter >> 20} MiB");
        Assert.Equal(0, Served.Device.GetStats().FailedWrites);
    }

    [Fact]
    public async Task Past_the_memory_limit_writes_get_ENOSPC_other_blocks_stay_and_trims_make_room()
    {
        Start(new ZramDeviceOptions { Name = "zram0", DiskSize = 64L << 20, MemLimit = 2L << 20 });
        using WireClient client = await WireClient.OpenAsync(SocketPath, "zram0");
        var random = new Random(3);
        var written = new List<byte[]>();
        NbdError error = NbdError.None;
        var page = new byte[Page];
        while (written.Count < 4096)
        {
            random.NextBytes(page); // incompressible
            error = await client.WriteAsync((long)written.Count * Page, page);
            if (error != NbdError.None)
            {
                break;
            }

            written.Add([.. page]);
        }

        Assert.Equal(NbdError.NoSpace, error);
        Assert.True(written.Count > 32, $"only {written.Count} pages fit");
        // The same connection goes on: the refused page reads as zeros, every acknowledged one is intact.
        Assert.True((await client.ReadAsync((long)written.Count * Page, Page)).AsSpan().IndexOfAnyExcept((byte)0) < 0);
        byte[] all = await client.ReadAsync(0, written.Count * Page);
        for (int i = 0; i < written.Count; i++)
        {
            Assert.True(all.AsSpan(i * Page, Page).SequenceEqual(written[i]), $"page {i} changed after ENOSPC");
        }

        // Trim every other page: freed objects are scattered over zspages, so only compaction returns them.
        for (int i = 0; i < written.Count; i += 2)
        {
            Assert.Equal(NbdError.None, await client.TrimAsync((long)i * Page, Page));
        }

        Assert.Equal(NbdError.None, await client.WriteAsync((long)written.Count * Page, page));
        Assert.True((await client.ReadAsync((long)written.Count * Page, Page)).AsSpan().SequenceEqual(page));
        Assert.True((await client.ReadAsync(Page, Page)).AsSpan().SequenceEqual(written[1]));
        Assert.True(Served.Device.GetStats().FailedWrites >= 1);
    }

    /// <summary>
    /// What SIGTERM does to the daemon (NbdServer.StopAsync with requests in flight), in-process so that the
    /// device can be read afterwards, byte by byte: the out-of-process SIGTERM test can only count pages.
    /// libnbd pipelines 32 writes of distinct pages; each write ends acknowledged (its page must hold exactly
    /// what was written), refused with ESHUTDOWN (never applied: the page stays zero) or unanswered when the
    /// connection closed (either). No page holds anything else, and nothing past the last one sent.
    /// </summary>
    [Fact]
    public async Task Stopping_with_writes_in_flight_keeps_every_acknowledged_write_byte_for_byte_and_applies_no_refused_one()
    {
        Start(new ZramDeviceOptions { Name = "zram0", DiskSize = 1L << 30 });
        string outcomes = Path.Combine(_directory, "outcomes");
        string script = """
            import errno
            h = nbd.NBD(); h.connect_uri(uri)
            pending = {}
            acked, refused = [], []
            index = 0
            announced = False
            try:
                while True:
                    while len(pending) < 32:
                        page = bytearray(b'page%010d..' % index) * 256
                        pending[h.aio_pwrite(nbd.Buffer.from_bytearray(page), index * 4096)] = index
                        index += 1
                    h.poll(-1)
                    for cookie in list(pending):
                        try:
                            if h.aio_command_completed(cookie):
                                acked.append(pending.pop(cookie))
                        except nbd.Error as e:
                            # ESHUTDOWN is the server's refusal; anything else (the connection closing under
                            # it) leaves the write unanswered.
                            if e.errnum == errno.ESHUTDOWN:
                                refused.append(pending.pop(cookie))
                    if not announced and len(acked) >= 2000:
                        print("writing", flush=True)
                        announced = True
            except nbd.Error:
                pass
            with open(out, "w") as f:
                f.write("sent %d\n" % index)
                f.writelines("a %d\n" % i for i in acked)
                f.writelines("r %d\n" % i for i in refused)
            print("done", flush=True)
            """;
        var info = new ProcessStartInfo(ClientTool.Python) { RedirectStandardOutput = true, UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add($"import nbd, sys\nuri = 'nbd+unix:///zram0?socket={SocketPath}'\nout = '{outcomes}'\n{script}");
        using var client = Process.Start(info)!;
        Assert.Equal("writing", await client.StandardOutput.ReadLineAsync());

        await Served.Server.StopAsync(TimeSpan.FromSeconds(30));
        Assert.Equal("done", await client.StandardOutput.ReadLineAsync());
        Assert.True(client.WaitForExit(60_000));

        string[] lines = File.ReadAllLines(outcomes);
        int sent = int.Parse(lines[0].AsSpan("sent ".Length), CultureInfo.InvariantCulture);
        var outcome = new char[sent + 64]; // '\0': unanswered, or never sent when past `sent`
        foreach (string line in lines.Skip(1))
        {
            outcome[int.Parse(line.AsSpan(2), CultureInfo.InvariantCulture)] = line[0];
        }

        int acked = outcome.Count(c => c == 'a');
        output.WriteLine($"sent {sent}, acknowledged {acked}, refused {outcome.Count(c => c == 'r')}");
        Assert.True(acked >= 2000);
        var expected = new byte[Page];
        var actual = new byte[Page];
        for (int i = 0; i < outcome.Length; i++)
        {
            Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"page{i:D10}..")).CopyTo(expected, 0);
            for (int copy = 16; copy < Page; copy *= 2)
            {
                expected.AsSpan(0, copy).CopyTo(expected.AsSpan(copy));
            }

            Assert.Equal(NbdError.None, Served.Device.Read((long)i * Page, actual));
            bool written = actual.AsSpan().SequenceEqual(expected);
            bool zero = actual.AsSpan().IndexOfAnyExcept((byte)0) < 0;
            switch (outcome[i])
            {
                case 'a':
                    Assert.True(written, $"acknowledged write {i} of {sent} does not read back as written");
                    break;
                case 'r':
                    Assert.True(zero, $"write {i}, refused with ESHUTDOWN, changed its page");
                    break;
                default:
                    Assert.True(i < sent ? written || zero : zero, $"page {i} (sent {sent}) holds neither its write nor zeros");
                    break;
            }
        }
    }

    private void Start(ZramDeviceOptions options)
    {
        Directory.CreateDirectory(_directory);
        _served = new ServedZramDevice(options, SocketPath, new NbdServerOptions { HandshakeTimeout = TimeSpan.FromSeconds(5) });
    }

    /// <summary>Opens and drops <paramref name="count"/> connections, 8 at a time, each cut at a random point
    /// of the handshake (before the greeting is read, or after 0 to all-but-one bytes of flags and GO).</summary>
    private async Task DropConnectionsAsync(byte[] go, int count, Random random)
    {
        int[] cuts = [.. Enumerable.Range(0, count).Select(_ => random.Next(-1, go.Length))];
        bool[] kills = [.. Enumerable.Range(0, count).Select(_ => random.Next(2) == 0)];
        int next = -1;
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            for (int i = Interlocked.Increment(ref next); i < count; i = Interlocked.Increment(ref next))
            {
                using WireClient client = await WireClient.ConnectAsync(SocketPath);
                if (cuts[i] >= 0)
                {
                    await client.ReceiveExactAsync(ServerGreeting.Length);
                    await client.SendAsync(go[..cuts[i]]);
                }

                if (kills[i])
                {
                    client.Kill();
                }
            }
        })));
    }

    /// <summary>Writes and reads back distinct pages until stopped; returns how many round trips matched.</summary>
    private static async Task<int> VerifiedIoAsync(WireClient client, CancellationToken stop)
    {
        var random = new Random(4);
        var page = new byte[Page];
        int verified = 0;
        while (!stop.IsCancellationRequested || verified == 0)
        {
            random.NextBytes(page);
            long offset = (long)random.Next(4096) * Page;
            Assert.Equal(NbdError.None, await client.WriteAsync(offset, page));
            Assert.True((await client.ReadAsync(offset, Page)).AsSpan().SequenceEqual(page), $"witness read back other data at {offset}");
            verified++;
        }

        return verified;
    }

    private async Task WaitForConnectionsAsync(int expected)
    {
        var clock = Stopwatch.StartNew();
        while (Served.Server.ConnectionCount != expected && clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(10);
        }

        Assert.Equal(expected, Served.Server.ConnectionCount);
    }

    private static (long Heap, long Rss) MemoryNow()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        using var self = Process.GetCurrentProcess();
        self.Refresh();
        return (GC.GetTotalMemory(true), self.WorkingSet64);
    }
}
