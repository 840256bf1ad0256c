using System.Collections.Concurrent;
using System.Text.Json;
using ZramDaemon.Tests.Daemon;

namespace ZramDaemon.Tests.Review;

/// <summary>
/// Review (end to end, real clients): coverage the suite lacked. These pass on the reviewed code; they keep paths
/// that no other test drives through the real daemon.
/// AdminVerbsDuringIoTests gives each connection blocks of its own and writes 512-byte pieces inside one page; the
/// soak writes whole blocks. Neither has two connections writing byte-granular ranges that cross page boundaries and
/// overlap each other in flight, mixed with WRITE_ZEROES (with and without NO_HOLE) over the same bytes, on a device
/// at its limit with writeback, dedup and recompression on while the admin verbs run. Nor did any test drive qemu's
/// own NBD client (qemu-io), whose WRITE_ZEROES with and without MAY_TRIM, discards and reads with structured replies
/// differ from libnbd's.
/// </summary>
public sealed class Review2E2eIntegrityTests
{
    private static string FullConfig(string dir) => AdminVerbsDuringIoTests.Config(dir, dedup: true, limitMiB: 2);

    /// <summary>
    /// Three threads, each with two connections of its own (six in all) and its own eight regions of 64 blocks. A round
    /// on a region sends 2-14 requests at once, split between the two connections: whole-page writes, byte-granular
    /// writes of 1 byte to 3 pages at any offset, WRITE_ZEROES and WRITE_ZEROES with NO_HOLE, which overlap each other
    /// freely. When all are answered the region is read back (from either connection): every byte no request covered
    /// must be as before, and every covered byte must be the value one of the requests covering it put there (requests
    /// in flight together may land in any order, but never produce a byte none of them wrote, nor touch a byte outside
    /// their ranges).
    /// </summary>
    private const string OverlapClients = """
        import random, threading, time, json
        B = 4096; REGION = 64 * B; NREG = 24
        errors = []; stats = {'rounds': 0, 'bytes': 0}
        def pat(seed, n):
            r = random.Random(seed); k = r.randrange(4)
            if k == 0: return bytes([seed & 0xff]) * n
            if k == 1: return r.randbytes(n)
            if k == 2: return ((b"ov%07d" % (seed % 97)) * (n // 9 + 1))[:n]
            return (r.randbytes(n // 3 + 1) + bytes(n))[:n]
        def connect():
            h = nbd.NBD(); h.set_strict_mode(0); h.set_request_block_size(False); h.connect_uri(uri); return h
        h0 = connect()
        model = [bytearray(h0.pread(REGION, i * REGION)) for i in range(NREG)]
        h0.shutdown()
        def run_round(hs, reg, rnd):
            r = random.Random(rnd); base = reg * REGION; ops = []
            for c in range(2):
                for k in range(r.randrange(1, 8)):
                    if r.random() < 0.4: off = r.randrange(REGION // B) * B; ln = B * r.randrange(1, 4)
                    else: off = r.randrange(REGION - 1); ln = r.randrange(1, 3 * B)
                    ln = min(ln, REGION - off); kind = r.random()
                    if kind < 0.8: ops.append((c, 'w', off, ln, pat(r.randrange(1 << 30), ln)))
                    elif kind < 0.9: ops.append((c, 'z', off, ln, bytes(ln)))
                    else: ops.append((c, 'zn', off, ln, bytes(ln)))
            a, b = r.sample(range(2), 2); cmds = []
            for (c, t, off, ln, d) in ops:
                h = hs[a] if c == 0 else hs[b]
                if t == 'w': cmds.append((h, h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(d)), base + off)))
                elif t == 'z': cmds.append((h, h.aio_zero(ln, base + off)))
                else: cmds.append((h, h.aio_zero(ln, base + off, flags=nbd.CMD_FLAG_NO_HOLE)))
            for h, c in cmds:
                while not h.aio_command_completed(c): h.poll(-1)
            got = hs[r.randrange(2)].pread(REGION, base); old = model[reg]
            poss = [None] * REGION
            for (c, t, off, ln, d) in ops:
                for i in range(ln):
                    p = poss[off + i]
                    if p is None: poss[off + i] = {d[i]}
                    else: p.add(d[i])
            for i in range(REGION):
                p = poss[i]
                if p is None and got[i] != old[i]:
                    errors.append(f"region {reg} round {rnd}: byte {i} (block {i // B} + {i % B}) that no request covered changed {old[i]} -> {got[i]}"); break
                if p is not None and got[i] not in p:
                    errors.append(f"region {reg} round {rnd}: byte {i} (block {i // B} + {i % B}) is {got[i]}, none of {sorted(p)[:4]}"); break
            model[reg] = bytearray(got); stats['rounds'] += 1; stats['bytes'] += sum(o[3] for o in ops)
        def worker(t):
            rnd = t * 10**7; hs = [connect(), connect()]
            while time.time() < end and len(errors) < 5:
                for reg in range(t, NREG, 3):
                    rnd += 1; run_round(hs, reg, rnd)
            for h in hs: h.shutdown()
        end = time.time() + seconds
        ts = [threading.Thread(target=worker, args=(t,)) for t in range(3)]
        for t in ts: t.start()
        for t in ts: t.join()
        print(json.dumps(dict(stats, errors=errors[:10])))
        """;

    private static readonly string[] Verbs =
    [
        "idle zram0", "writeback zram0 type=idle", "recompress zram0 type=idle", "compact zram0", "set zram0 mem_limit=1M",
        "writeback zram0 type=all", "recompress zram0", "set zram0 mem_limit=2M", "writeback zram0 type=huge",
        "set zram0 comp_algorithm=lz4", "idle zram0", "recompress zram0 type=huge", "set zram0 comp_algorithm=zstd:1",
    ];

    [Fact]
    public async Task Overlapping_byte_granular_writes_and_zeroes_from_two_connections_leave_each_byte_from_one_of_them_under_admin_verbs()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(FullConfig);
        Task<ClientTool.Result> clients = Task.Run(() => ClientTool.PythonNbd(daemon.Uri(), "seconds = 12\n" + OverlapClients, timeoutSeconds: 50));
        var failures = new ConcurrentQueue<string>();
        int verbs = 0;
        Task admin = Task.Run(() =>
        {
            for (int i = 0; !clients.IsCompleted; i++)
            {
                string verb = Verbs[i % Verbs.Length];
                (int code, _, string stderr) = daemon.Cli(verb.Split(' '));
                verbs++;
                if (code != 0)
                {
                    failures.Enqueue($"'{verb}' exit {code}: {stderr.Trim()}");
                }
            }
        });
        await admin;
        ClientTool.Result result = (await clients).EnsureSuccess();
        using JsonDocument report = JsonDocument.Parse(result.Stdout.Trim().Split('\n')[^1]);
        JsonElement r = report.RootElement;
        Assert.True(r.GetProperty("errors").GetArrayLength() == 0, "bytes read back that no request wrote:\n" + r.GetProperty("errors"));
        Assert.True(failures.IsEmpty, "admin verbs failed during I/O:\n" + string.Join('\n', failures));
        Assert.True(r.GetProperty("rounds").GetInt64() >= 30 && verbs >= 5, $"too little happened to race: {r}, {verbs} verbs");
        Assert.True(daemon.Status().GetProperty("failed_writes").GetInt64() == 0, "a write failed on a device with a backing file");
    }

    /// <summary>
    /// qemu's NBD client (qemu-io, as qemu and qemu-img use it): 1500 random commands on the first 16 MiB in 512-byte
    /// sectors (write -P, write -z, write -z -u, discard, read -P of every run of equal sectors against the model),
    /// then every sector read back and checked. qemu-io reports a mismatch as "Pattern verification failed".
    /// </summary>
    [Fact]
    public void Qemu_io_writes_zeroes_discards_and_pattern_reads_agree_with_a_model()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig(FullConfig);
        string commands = Path.Combine(daemon.Directory, "qemu-io.cmds");
        ClientTool.Run(ClientTool.Python, ["-c", """
            import random, sys
            r = random.Random(7); S = 512; N = (16 << 20) // S
            model = [0] * N; cmds = []
            def runs(a, n):
                i = a
                while i < a + n:
                    j = i
                    while j < a + n and model[j] == model[i]: j += 1
                    cmds.append(f"read -P {model[i]} {i * S} {(j - i) * S}"); i = j
            for _ in range(1500):
                op = r.random(); a = r.randrange(N); n = min(N - a, r.choice([1, 3, 8, 16, 100, 1000]))
                if op < 0.45:
                    p = r.randrange(1, 256); cmds.append(f"write -P {p} {a * S} {n * S}"); model[a:a + n] = [p] * n
                elif op < 0.55: cmds.append(f"write -z {a * S} {n * S}"); model[a:a + n] = [0] * n
                elif op < 0.6: cmds.append(f"write -z -u {a * S} {n * S}"); model[a:a + n] = [0] * n
                elif op < 0.65: cmds.append(f"discard {a * S} {n * S}"); model[a:a + n] = [0] * n
                else: runs(a, n)
            runs(0, N)
            open(sys.argv[1], "w").write("\n".join(cmds) + "\n")
            """, commands]).EnsureSuccess();
        ClientTool.Result result = ClientTool.Run("bash", ["-c", $"qemu-io -f raw '{daemon.Uri()}' < '{commands}'"], timeoutSeconds: 60).EnsureSuccess();
        string output = result.Stdout + result.Stderr;
        Assert.DoesNotContain("Pattern verification failed", output, StringComparison.Ordinal);
        Assert.DoesNotContain("failed", output, StringComparison.OrdinalIgnoreCase);
        int reads = output.Split('\n').Count(l => l.Contains("read ", StringComparison.Ordinal) && l.Contains(" bytes at offset", StringComparison.Ordinal));
        Assert.True(reads > 500, $"qemu-io read back only {reads} times:\n{output[..Math.Min(2000, output.Length)]}");
    }
    /// <summary>
    /// Four connections, each on its own 512 blocks, 16 requests in flight at a time: whole-block writes (1-8 blocks)
    /// drawn from nine page contents (so dedup shares them), writes of up to 600 bytes anywhere in a range, trims and
    /// reads checked against the model, on a device with dedup and recompression but no writeback-file, whose limit the
    /// admin moves between 300K and 2M (with compact, idle, recompress and algorithm changes) so that many writes are
    /// refused with ENOSPC. A refused write may leave each block it covers old or new, never anything else (README:
    /// a refused write keeps the slot's old contents); that is checked at once, and every block again at the end.
    /// </summary>
    private const string NoSpaceClients = """
        import random, threading, time, json
        B = 4096; T = 4; PER = 512; errors = []; st = {'done': 0, 'nospc': 0}
        r0 = random.Random(99)
        POOL = [r0.randbytes(B) for _ in range(3)] + [((b"dd%03d" % i) * 1000)[:B] for i in range(3)] + [(r0.randbytes(1500) + bytes(B))[:B] for _ in range(3)]
        def worker(t):
            h = nbd.NBD(); h.connect_uri(uri); base = t * PER * B; r = random.Random(t + 1000)
            model = bytearray(h.pread(PER * B, base))
            while time.time() < end and not errors:
                cmds = []; used = set()
                for k in range(16):
                    b = r.randrange(PER); n = r.choice([1, 1, 1, 2, 8])
                    if b + n > PER or any(x in used for x in range(b, b + n)): continue
                    used.update(range(b, b + n)); op = r.random(); off = b * B; ln = n * B
                    if op < 0.6:
                        d = b"".join(r.choice(POOL) for _ in range(n))
                        cmds.append(('w', off, ln, d, h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(d)), base + off)))
                    elif op < 0.7:
                        po = r.randrange(0, ln, 512); pl = 512 * r.randrange(1, 3); pl = min(pl, ln - po); d = r.choice(POOL)[:pl]
                        cmds.append(('p', off + po, pl, d, h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(d)), base + off + po)))
                    elif op < 0.8:
                        cmds.append(('z', off, ln, bytes(ln), h.aio_trim(ln, base + off)))
                    else:
                        buf = nbd.Buffer(ln); cmds.append(('r', off, ln, buf, h.aio_pread(buf, base + off)))
                for typ, off, ln, d, c in cmds:
                    try:
                        while not h.aio_command_completed(c): h.poll(-1)
                    except nbd.Error as e:
                        if 'ENOSPC' not in str(e) and 'No space' not in str(e): errors.append(f"{typ} at {off}: {e}"); continue
                        st['nospc'] += 1
                        p0 = off - off % B; p1 = (off + ln + B - 1) // B * B
                        got = h.pread(p1 - p0, base + p0); new = bytearray(model[p0:p1]); new[off - p0:off - p0 + ln] = d
                        for q in range(0, p1 - p0, B):
                            if got[q:q + B] not in (model[p0 + q:p0 + q + B], new[q:q + B]): errors.append(f"connection {t}: block {(p0 + q) // B} neither old nor new after a refused {typ}")
                        model[p0:p1] = got; continue
                    st['done'] += 1
                    if typ != 'r': model[off:off + ln] = d
                    elif d.to_bytearray() != model[off:off + ln]: errors.append(f"connection {t}: read of {off}+{ln} differs from what was written")
            if h.pread(PER * B, base) != model: errors.append(f"connection {t}: its blocks differ from what was written, at the end")
            h.shutdown()
        end = time.time() + seconds
        ts = [threading.Thread(target=worker, args=(t,)) for t in range(T)]
        for x in ts: x.start()
        for x in ts: x.join()
        print(json.dumps(dict(st, errors=errors[:10])))
        """;

    [Fact]
    public async Task Writes_refused_at_the_limit_without_a_backing_file_leave_every_block_old_or_new_with_dedup_and_limit_changes()
    {
        using RunningDaemon daemon = RunningDaemon.StartWithConfig("""
            [zram0]
            zram-size = 16M
            dedup = yes
            zram-resident-limit = 1
            recompress-algorithm = zstd:5
            recompress-idle-after = 1s
            """);
        Task<ClientTool.Result> clients = Task.Run(() => ClientTool.PythonNbd(daemon.Uri(), "seconds = 10\n" + NoSpaceClients, timeoutSeconds: 50));
        string[] verbs = ["set zram0 mem_limit=400K", "compact zram0", "idle zram0", "recompress zram0", "set zram0 mem_limit=1M",
            "set zram0 mem_limit=300K", "set zram0 comp_algorithm=lz4", "set zram0 mem_limit=2M", "set zram0 comp_algorithm=zstd:1"];
        var failures = new ConcurrentQueue<string>();
        await Task.Run(() =>
        {
            for (int i = 0; !clients.IsCompleted; i++)
            {
                (int code, _, string stderr) = daemon.Cli(verbs[i % verbs.Length].Split(' '));
                if (code != 0)
                {
                    failures.Enqueue($"'{verbs[i % verbs.Length]}' exit {code}: {stderr.Trim()}");
                }
            }
        });
        ClientTool.Result result = (await clients).EnsureSuccess();
        using JsonDocument report = JsonDocument.Parse(result.Stdout.Trim().Split('\n')[^1]);
        JsonElement r = report.RootElement;
        Assert.True(r.GetProperty("errors").GetArrayLength() == 0, "blocks other than written or refused:\n" + r.GetProperty("errors"));
        Assert.True(failures.IsEmpty, "admin verbs failed during I/O:\n" + string.Join('\n', failures));
        Assert.True(r.GetProperty("nospc").GetInt64() > 0 && r.GetProperty("done").GetInt64() > 1000, $"the limit was never reached, or too little I/O: {r}");
    }
}
