using System.Collections.Concurrent;
using System.Text.Json;

namespace ZramDaemon.Tests.Daemon;

/// <summary>
/// The admin verbs, through the real control socket, while real NBD clients (libnbd) read and write a real daemon.
/// ZramDeviceModelTests meets every feature in one process; these go through zramd itself, where `set`, `compact`,
/// `writeback`, `recompress`, `idle` and `reset` arrive on control connections of their own, two at a time, and the
/// export's claim decides when a reset may run.
/// </summary>
public sealed class AdminVerbsDuringIoTests
{
    private const int Page = 4096;

    /// <summary>A 16M device with every feature on (dedup as asked) at a limit of <paramref name="limitMiB"/>; the review
    /// tests use it too.</summary>
    internal static string Config(string dir, bool dedup, int limitMiB = 3) => $"""
        [zram0]
        zram-size = 16M
        compression-algorithm = zstd:1
        zram-resident-limit = {limitMiB}
        recompress-algorithm = zstd:9
        recompress-idle-after = 1s
        recompress-cpu-percent = 50
        recompress-dictionary = 16K
        writeback-file = {Path.Combine(dir, "zram0.wb")}
        writeback-watermark = 60
        dedup = {(dedup ? "yes" : "no")}
        """;

    /// <summary>
    /// Three connections, each owning 384 blocks, for <c>seconds</c>: whole-page writes (same-filled, incompressible,
    /// compressible and repeated across blocks, half random), 512-byte writes into a page, write-zeroes, trims, reads
    /// checked against the model, and batches of 16 writes then 16 reads in flight at once. A write refused with ENOSPC
    /// leaves the model as it was (the block must keep its old content). Then every block is read back, and the model's
    /// stored and same-filled pages are printed as JSON for the counters.
    /// </summary>
    private const string Clients = """
        import random, threading, time, json
        B = 4096; PER = 384; T = 3
        def page(seed, kind):
            r = random.Random(seed)
            if kind == 0: return bytes([seed & 0xff]) * B
            if kind == 1: return r.randbytes(B)
            if kind == 2: return ((b"zramd %08d " % (seed % 50)) * 300)[:B]
            return (r.randbytes(1200) + bytes(B))[:B]
        model = {}; stored = set(); errors = []; stop = threading.Event(); done = {'writes': 0, 'refused': 0}
        def nospace(e): return 'ENOSPC' in str(e) or 'No space' in str(e)
        def client(t):
            h = nbd.NBD(); h.connect_uri(uri)
            r = random.Random(t); base = t * PER
            while not stop.is_set():
                b = base + r.randrange(PER); op = r.random()
                try:
                    if op < 0.55:
                        d = page(r.randrange(1 << 30), r.randrange(4))
                        h.pwrite(d, b * B); model[b] = d; stored.add(b); done['writes'] += 1
                    elif op < 0.65:
                        off = r.randrange(8) * 512; d = page(r.randrange(1 << 30), r.randrange(4))[:512]
                        old = model.get(b, bytes(B))
                        h.pwrite(d, b * B + off); model[b] = old[:off] + d + old[off + 512:]; stored.add(b)
                    elif op < 0.68:
                        h.zero(B, b * B, nbd.CMD_FLAG_NO_HOLE); model[b] = bytes(B); stored.add(b)
                    elif op < 0.72:
                        h.trim(B, b * B); model[b] = bytes(B); stored.discard(b)
                    elif op < 0.9:
                        got = h.pread(B, b * B)
                        if got != model.get(b, bytes(B)): errors.append(f"block {b} read back other bytes than were written")
                    else:
                        bs = r.sample(range(base, base + PER), 16)
                        ds = [page(r.randrange(1 << 30), r.randrange(4)) for _ in bs]
                        cs = [h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(d)), x * B) for x, d in zip(bs, ds)]
                        for x, d, c in zip(bs, ds, cs):
                            try:
                                while not h.aio_command_completed(c): h.poll(-1)
                                model[x] = d; stored.add(x)
                            except nbd.Error as e:
                                if not nospace(e): errors.append(f"write of {x} in flight: {e}")
                                done['refused'] += 1
                        bufs = [nbd.Buffer(B) for _ in bs]
                        cs = [h.aio_pread(buf, x * B) for x, buf in zip(bs, bufs)]
                        for x, buf, c in zip(bs, bufs, cs):
                            while not h.aio_command_completed(c): h.poll(-1)
                            if buf.to_bytearray() != model.get(x, bytes(B)): errors.append(f"block {x} read back (in flight) other bytes than were written")
                except nbd.Error as e:
                    if not nospace(e): errors.append(f"block {b}: {e}")
                    done['refused'] += 1
            h.shutdown()
        threads = [threading.Thread(target=client, args=(t,)) for t in range(T)]
        for t in threads: t.start()
        time.sleep(seconds); stop.set()
        for t in threads: t.join()
        h = nbd.NBD(); h.connect_uri(uri)
        for b in range(T * PER):
            if h.pread(B, b * B) != model.get(b, bytes(B)): errors.append(f"block {b} differs from what was written, at the end")
        h.shutdown()
        same = sum(1 for b in stored if model[b] == model[b][:8] * 512)
        print(json.dumps({'stored': len(stored), 'same': same, 'writes': done['writes'], 'refused': done['refused'], 'errors': errors[:20]}))
        """;

    /// <summary>Two admins at once, each going round its list until the clients are done.</summary>
    private static readonly string[][] AdminVerbs =
    [
        ["writeback zram0 type=all", "compact zram0", "writeback zram0 type=huge max_pages=50", "set zram0 writeback_limit=100K",
            "writeback zram0 type=idle", "set zram0 writeback_limit=0", "writeback zram0 type=huge_idle", "stats zram0"],
        ["idle zram0", "recompress zram0 type=idle", "set zram0 mem_limit=1M", "recompress zram0 type=huge threshold=1000",
            "set zram0 comp_algorithm=lz4", "recompress zram0", "set zram0 mem_limit=0", "compact", "set zram0 comp_algorithm=zstd:1",
            "set zram0 mem_used_max=0", "set zram0 mem_limit=3M", "status", "classes zram0"],
    ];

    private static long Field(JsonElement device, string name) => device.GetProperty(name).GetInt64();

    /// <summary>Runs <paramref name="verbs"/> round and round until <paramref name="until"/> completes; a verb
    /// that fails goes to <paramref name="failures"/> (each of these must succeed, whatever the I/O does).</summary>
    private static Task Admin(RunningDaemon daemon, string[] verbs, Task until, ConcurrentQueue<string> failures, Func<string, (int, string, string), bool>? accept = null) =>
        Task.Run(() =>
        {
            for (int i = 0; !until.IsCompleted; i++)
            {
                string verb = verbs[i % verbs.Length];
                (int code, string stdout, string stderr) = daemon.Cli(verb.Split(' '));
                if (accept is not null ? !accept(verb, (code, stdout, stderr)) : code != 0)
                {
                    failures.Enqueue($"'{verb}' exit {code}: {stderr.Trim()}");
                }
            }
        });

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Every_admin_verb_during_io_on_three_connections_keeps_every_block_and_the_counters(bool dedup)
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(dir => Config(dir, dedup));
        Task<ClientTool.Result> clients = Task.Run(() => ClientTool.PythonNbd(daemon.Uri(), "seconds = 15\n" + Clients, timeoutSeconds: 50));
        var failures = new ConcurrentQueue<string>();
        // A writeback the daily limit stops fails, as the kernel's write does (EIO); that is the limit working.
        await Task.WhenAll(AdminVerbs.Select(verbs => Admin(daemon, verbs, clients, failures, (verb, reply) =>
            reply.Item1 == 0 || (verb.StartsWith("writeback", StringComparison.Ordinal) && reply.Item1 == 1
                && reply.Item3.Contains("daily writeback_limit is used up", StringComparison.Ordinal)))));

        ClientTool.Result result = (await clients).EnsureSuccess();
        using JsonDocument report = JsonDocument.Parse(result.Stdout.Trim().Split('\n')[^1]);
        JsonElement r = report.RootElement;
        Assert.True(r.GetProperty("errors").GetArrayLength() == 0, "the clients read back other bytes than they wrote:\n" + r.GetProperty("errors"));
        Assert.True(failures.IsEmpty, "admin verbs failed during I/O:\n" + string.Join('\n', failures));
        Assert.True(r.GetProperty("writes").GetInt64() > 1000, $"too little I/O to race with: {r}");

        JsonElement status = daemon.Status();
        Assert.True(Field(status, "orig_data_size") == r.GetProperty("stored").GetInt64() * Page,
            $"orig_data_size {Field(status, "orig_data_size")} but the clients left {r.GetProperty("stored")} pages stored");
        Assert.True(Field(status, "same_pages") == r.GetProperty("same").GetInt64(),
            $"same_pages {Field(status, "same_pages")} but the clients left {r.GetProperty("same")} same-filled pages");

        // Nothing stored, nothing left: a counter an admin verb skewed during the run shows here.
        ClientTool.PythonNbd(daemon.Uri(), $"h = nbd.NBD(); h.connect_uri(uri)\nh.trim({3 * 384 * Page}, 0)\nh.shutdown()").EnsureSuccess();
        (int code, _, string error) = daemon.Cli("compact", "zram0");
        Assert.True(code == 0, error);
        status = daemon.Status();
        string[] counters = ["orig_data_size", "compr_data_size", "same_pages", "huge_pages", "bd_count", "recompress_dict_pages", "dedup_pages", "dedup_bytes_saved"];
        string left = string.Join(", ", counters.Where(c => Field(status, c) != 0).Select(c => $"{c} = {Field(status, c)}"));
        Assert.True(left.Length == 0, "after every block was trimmed: " + left);
    }

    /// <summary>
    /// A client that connects, checks what it wrote last time, writes 256 blocks anew and disconnects, over and over,
    /// while the admin resets the device as often as it can (and a second admin runs the other verbs). A reset runs
    /// only with no client connected (refused otherwise, README), and no client may connect into the middle of one: so
    /// each time the client finds either all of its last blocks or none of them, never a mix.
    /// </summary>
    private const string ResetClient = """
        import random, time, json
        B = 4096; K = 256
        def page(seed, i):
            r = random.Random(seed * 1000 + i)
            return (r.randbytes(B), ((b"blk %d %d " % (seed, i)) * 1024)[:B], bytes([seed & 0xff]) * B)[i % 3]
        last = None; errors = []; counts = {'sessions': 0, 'not_admitted': 0, 'found_zeroed': 0}
        end = time.time() + seconds
        while time.time() < end:
            h = nbd.NBD()
            try: h.connect_uri(uri)
            except nbd.Error:
                counts['not_admitted'] += 1; time.sleep(0.01); continue
            counts['sessions'] += 1
            got = [h.pread(B, i * B) for i in range(K)]
            if last is not None:
                old = [g == page(last, i) for i, g in enumerate(got)]
                zero = [g == bytes(B) for g in got]
                if all(zero): counts['found_zeroed'] += 1
                elif not all(old):
                    errors.append(f"{old.count(False)} of {K} blocks neither as written nor reset, e.g. {[i for i in range(K) if not old[i]][:5]}")
            last = random.randrange(1, 1 << 20)
            for i in range(K): h.pwrite(page(last, i), i * B)
            h.shutdown()
            time.sleep(0.3)
        print(json.dumps(dict(counts, errors=errors[:20])))
        """;

    [Fact]
    public async Task Reset_racing_clients_that_come_and_go_drops_all_or_nothing_and_zeroes_every_counter()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(dir => Config(dir, dedup: true));
        Task<ClientTool.Result> client = Task.Run(() => ClientTool.PythonNbd(daemon.Uri(), "seconds = 15\n" + ResetClient, timeoutSeconds: 50));
        var failures = new ConcurrentQueue<string>();
        int resets = 0, refused = 0;
        Task resetting = Admin(daemon, ["reset zram0"], client, failures, (_, reply) =>
        {
            if (reply.Item1 == 0)
            {
                Interlocked.Increment(ref resets);
                return true;
            }

            Interlocked.Increment(ref refused);
            return reply.Item3.Contains("client(s) connected", StringComparison.Ordinal);
        });
        Task others = Admin(daemon, ["idle zram0", "recompress zram0", "writeback zram0 type=huge", "compact zram0", "status", "writeback zram0 type=all"], client, failures);
        await Task.WhenAll(resetting, others);

        ClientTool.Result result = (await client).EnsureSuccess();
        using JsonDocument report = JsonDocument.Parse(result.Stdout.Trim().Split('\n')[^1]);
        JsonElement r = report.RootElement;
        Assert.True(r.GetProperty("errors").GetArrayLength() == 0, "a client found part of its data reset:\n" + r.GetProperty("errors"));
        Assert.True(failures.IsEmpty, "admin verbs failed:\n" + string.Join('\n', failures));
        Assert.True(resets > 0 && refused > 0 && r.GetProperty("found_zeroed").GetInt32() > 0,
            $"the race did not happen: {resets} resets, {refused} refused, client {r}");

        (int code, _, string error) = daemon.Cli("reset", "zram0");
        Assert.True(code == 0, error);
        JsonElement status = daemon.Status();
        string[] counters = ["orig_data_size", "compr_data_size", "same_pages", "huge_pages", "huge_pages_since", "bd_count", "bd_writes",
            "recompressed_pages", "recompress_dict_pages", "dedup_pages", "dedup_bytes_saved", "failed_writes"];
        string left = string.Join(", ", counters.Where(c => Field(status, c) != 0).Select(c => $"{c} = {Field(status, c)}"));
        Assert.True(left.Length == 0, "after a reset: " + left);
        ClientTool.PythonNbd(daemon.Uri(), "h = nbd.NBD(); h.connect_uri(uri)\nassert h.pread(256 * 4096, 0) == bytes(256 * 4096), 'data survived the reset'\nh.shutdown()").EnsureSuccess();
    }
}
