#!/usr/bin/env bash
# Soak: fio's nbd engine against a real zramd for SOAK_SECONDS (default 600), with crc32c verification, mixed
# random writes, trims and reads over 4 connections (one per fio job), and memory limits tight enough that background
# compaction and ENOSPC both happen. Not part of ./scripts/test.sh. Prints the bytes each job moved, the
# devices' counters, and fails on any verify error or any failed write where none may happen.
#
# Layout, and why: with one global limit any writer may get ENOSPC, and fio's verifying writers treat a
# refused write as fatal (and would then verify data that was never stored). So the daemon serves two devices:
#   zram0 (128 MiB, limit 56 MiB, compact-watermark 50%): a verify job (randwrite, crc32c, verify_backlog=512,
#     verify_fatal=1) on its own 48 MiB region with half-compressible buffers refilled per write, and a churn
#     writer on a 16 MiB region with 20% compressible buffers. The data (~24 + ~13 MiB in the pool, more with
#     fragmentation) fits under the limit but stays above the watermark (28 MiB), so background compaction
#     keeps running (compressed sizes of refilled random buffers vary enough to move overwritten pages
#     between size classes and leave holes); a failed write on zram0 fails the soak (failed_writes must stay 0).
#   zram1 (256 MiB, limit 16 MiB): a randwrite churn job (incompressible, continue_on_error=write,
#     ignore_error=ENOSPC) and a rate-limited randtrim job (100 x 64 KiB/s, slower than the writes) on the
#     same 64 MiB range: the pool hits the limit, writes get ENOSPC (failed_writes must grow), trims free room,
#     writes succeed again. The range is a quarter of the device so that a random trim lands on stored blocks
#     often (about a quarter of its 16): over the whole 256 MiB one trim freed one block on average, and a 15 s
#     run on a loaded machine wrote too little past the limit to show it.
#   zram2 (128 MiB, limit 8 MiB, zstd): every feature at once: dedup, a backing file, background recompression
#     (zstd:9, pages idle after 1 s; a dictionary is configured, but one is made only with room for it under the limit,
#     which this device seldom has: DictionaryRecompressionTests cover it) and compaction. A verify job (rate-limited, 48 MiB) and a churn
#     job writing pages that repeat (dedupe_percentage; fio's verify header makes every verified block unique) and
#     reading: 80 MiB of data against an 8 MiB limit, so writeback must make room for the writes (failed_writes must
#     stay 0, and something must have been written back and deduplicated). With zstd a read and a dedup write need
#     a compression stream to decompress: the case in which a stream held while waiting for a lock deadlocked.
# (fio 3.33: trim_percentage/trim_verify_zero with verify abort fio in fio_ro_check, and randtrimwrite
# only trims, so trims stay in a job without verification.)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${SOAK_SECONDS:-600}"
work="$(mktemp -d)"
zramd_pid=""
cleanup() {
  if [ -n "$zramd_pid" ] && kill -0 "$zramd_pid" 2>/dev/null; then
    kill -TERM "$zramd_pid"
    wait "$zramd_pid" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# SOAK_ZRAMD: a built zramd.dll to use instead of building one (the test run passes its own).
if [ -z "${SOAK_ZRAMD:-}" ]; then
  dotnet build src/ZramDaemon/ZramDaemon.csproj -c Release -nologo -v:q >&2
fi
zramd=(dotnet "${SOAK_ZRAMD:-src/ZramDaemon/bin/Release/net10.0/zramd.dll}")

cat > "$work/zramd.conf" <<CONF
[zramd]
listen = unix:$work/zramd.sock
control = $work/zramd.ctl
lock-memory = no

[zram0]
zram-size = 128M
zram-resident-limit = 56M
compact-watermark = 50

[zram1]
zram-size = 256M
zram-resident-limit = 16M

[zram2]
zram-size = 128M
zram-resident-limit = 8M
compression-algorithm = zstd:1
dedup = yes
writeback-file = $work/zram2.wb
recompress-algorithm = zstd:9
recompress-idle-after = 1s
recompress-cpu-percent = 50
recompress-dictionary = 16K
CONF

"${zramd[@]}" --config "$work/zramd.conf" > "$work/zramd.log" 2>&1 &
zramd_pid=$!
for _ in $(seq 300); do [ -S "$work/zramd.ctl" ] && break; sleep 0.1; done
[ -S "$work/zramd.ctl" ] || { cat "$work/zramd.log"; echo "soak: zramd did not start" >&2; exit 1; }

uri0="nbd+unix:///zram0?socket=$work/zramd.sock"
uri1="nbd+unix:///zram1?socket=$work/zramd.sock"
uri2="nbd+unix:///zram2?socket=$work/zramd.sock"
# The verified writer of zram0 and of zram2: half-compressible pages refilled for every write, each checked.
verified="rw=randwrite
offset=0
size=48M
verify=crc32c
verify_backlog=512
verify_fatal=1
buffer_compress_percentage=50
refill_buffers=1"
cat > "$work/soak.fio" <<FIO
[global]
ioengine=nbd
bs=4k
iodepth=16
time_based=1
runtime=$seconds

[verify]
uri=$uri0
$verified

[churn0]
uri=$uri0
rw=randwrite
offset=48M
size=16M
buffer_compress_percentage=20
refill_buffers=1

[churn-write]
uri=$uri1
rw=randwrite
size=64M
continue_on_error=write
ignore_error=,ENOSPC

[churn-trim]
uri=$uri1
rw=randtrim
bs=64k
rate_iops=100
size=64M

[verify-all]
uri=$uri2
$verified
rate_iops=2000

[churn-all]
uri=$uri2
rw=randrw
rwmixread=50
offset=48M
size=32M
dedupe_percentage=50
buffer_compress_percentage=30
refill_buffers=1
rate_iops=1000,1000
FIO

echo "soak: $seconds s, fio $(fio --version) against zramd (pid $zramd_pid)"
# Once a second, the devices' counters from the control socket (one request line, one JSON line back), so that
# the report can show the deepest deferred-free queue and how usage moved, not only the end state.
python3 - "$work/zramd.ctl" "$work/samples.jsonl" <<'PY' &
import socket, sys, time
path, out = sys.argv[1], sys.argv[2]
with open(out, "w") as f:
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.sendall(b"status\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            s.close()
        except OSError:
            break
        f.write(data.decode()); f.flush()
        time.sleep(1)
PY
sampler_pid=$!
status=0
# fio saves its verify state files in the working directory: keep them in $work, out of the repository.
(cd "$work" && fio --output-format=json --output="$work/fio.json" "$work/soak.fio") || status=$?
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
"${zramd[@]}" status --json --control "$work/zramd.ctl" > "$work/status.json"

python3 - "$work/fio.json" "$work/status.json" "$status" "$work/samples.jsonl" <<'PY'
import json, sys
fio = json.load(open(sys.argv[1]))
status = json.load(open(sys.argv[2]))
fio_exit = int(sys.argv[3])
samples = []
for line in open(sys.argv[4]):
    try:
        samples.append(json.loads(line))
    except ValueError:
        pass

def devices(node):
    if isinstance(node, dict):
        if "failed_writes" in node:
            yield node
        for v in node.values():
            yield from devices(v)
    elif isinstance(node, list):
        for v in node:
            yield from devices(v)

moved = {"read": 0, "write": 0, "trim": 0}
verify_errors = 0
for job in fio["jobs"]:
    for d in moved:
        moved[d] += job[d]["io_bytes"]
    errors = job.get("error", 0)
    if job["jobname"].startswith("verify") and errors:
        verify_errors += 1
    print(f"{job['jobname']:12} read {job['read']['io_bytes'] >> 20:7} MiB  write {job['write']['io_bytes'] >> 20:7} MiB  "
          f"trim {job['trim']['io_bytes'] >> 20:7} MiB  error {errors} ({job.get('total_err', 0)} ignored)")
print(f"moved: read {moved['read'] >> 20} MiB, written {moved['write'] >> 20} MiB, trimmed {moved['trim'] >> 20} MiB "
      f"({moved['read'] + moved['write']} bytes read and written)")
found = {d.get("name", d.get("device", "?")): d for d in devices(status)}
for name, d in sorted(found.items()):
    seen = [s for sample in samples for s in devices(sample) if s.get("name") == name]
    deepest = max((s["deferred_free_depth"] for s in seen), default=0)
    print(f"{name}: mem_used_max {d['mem_used_max'] >> 20} MiB of limit {d['mem_limit'] >> 20} MiB, failed_writes (ENOSPC) {d['failed_writes']}, "
          f"compaction_runs {d['compaction_runs']} ({d['compaction_time_us'] // 1000} ms), pages_compacted {d['pages_compacted']}, "
          f"failed_reads {d['failed_reads']}, bd_writes {d['bd_writes']}, dedup_pages {d['dedup_pages']}, "
          f"recompressed_pages {d['recompressed_pages']}, deepest deferred-free queue {deepest} ({len(seen)} samples)")
problems = []
if fio_exit != 0:
    problems.append(f"fio exited {fio_exit}")
if verify_errors:
    problems.append(f"{verify_errors} verify job(s) failed")
zram0, zram1, zram2 = found.get("zram0"), found.get("zram1"), found.get("zram2")
if zram0 is None or zram1 is None or zram2 is None:
    problems.append("zramd status did not list zram0, zram1 and zram2")
else:
    if zram0["failed_writes"] or zram0["failed_reads"]:
        problems.append("zram0 (the verified device) failed a request")
    if zram0["compaction_runs"] == 0:
        problems.append("no background compaction ran on zram0")
    if zram1["failed_writes"] == 0:
        problems.append("zram1 never reached ENOSPC: the limit is not tight enough")
    # fio counts only writes that succeeded: more incompressible data than the limit holds means trims made room.
    churn = next(j for j in fio["jobs"] if j["jobname"] == "churn-write")
    if churn["write"]["io_bytes"] <= zram1["mem_limit"]:
        problems.append("zram1's writes never succeeded again after ENOSPC (trims made no room)")
    if zram2["failed_writes"] or zram2["failed_reads"]:
        problems.append("zram2 (every feature) failed a request: writeback should have made room")
    if zram2["bd_writes"] == 0:
        problems.append("nothing on zram2 was written back")
    if zram2["dedup_pages"] == 0:
        problems.append("nothing on zram2 was deduplicated")
print("verify errors: 0" if not verify_errors and fio_exit == 0 else "verify errors: see above")
if problems:
    print("SOAK FAILED: " + "; ".join(problems))
    sys.exit(1)
print("SOAK PASSED")
PY
