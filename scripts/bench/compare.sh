#!/usr/bin/env bash
# Side-by-side benchmark: zramd against nbdkit's memory plugin (allocator=sparse and allocator=zstd) and,
# when run as root on a kernel with /sys/class/zram-control, the kernel's own zram with lz4.
# zramd-floor is the same daemon with the device's work taken out, and runs the fio workloads and the timed trims
# only, on pages that all hold one repeated non-zero byte (same-filled: no compression, no pool, a read is a fill of
# the reply buffer, a trim frees nothing from a pool). Every byte still crosses the socket: blocks never written would
# be read as holes (a structured reply without the data), which ran 128 KiB reads at twice the rate of a floor that
# moves the data. It is the ceiling of zramd's server and fio's nbd engine on this machine: how far the device's work
# is from it.
#
# Every round runs every system once, interleaved, so the drift of a shared machine spreads over all of them;
# each round starts one system further on (A B C, B C A, C A B), so that no system always runs first or after the
# same neighbour (with a fixed order, zramd ran first in every round and its A/B against zramd-base moved by up
# to 20% against interleaved pairs of fresh daemons). The report gives medians with min/max and the ratios
# zramd / peer.
#
#   scripts/bench/compare.sh [--rounds N] [--runtime SECONDS] [--corpus-mib MIB] [--systems LIST] [--out DIR]
#                            [--baseline DIR]
#
# --baseline DIR adds "zramd-base": the zramd built from another checkout (e.g. `git worktree add DIR main`), run
# interleaved with this one, so that a change is measured against what it changes.
# Writes docs/BENCHMARKS.md and docs/benchmarks.png (unless --out says elsewhere) and prints the table.
set -Eeuo pipefail
# set -e ends the script without a word; say where.
trap 'echo "compare.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/../.."
root=$(pwd)

rounds=3
runtime=5
corpus_mib=512
systems="zramd nbdkit-sparse nbdkit-zstd kernel-zram zramd-floor"
out=docs
baseline=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --runtime) runtime=$2; shift 2 ;;
    --corpus-mib) corpus_mib=$2; shift 2 ;;
    --systems) systems=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --baseline) baseline=$(cd "$2" && pwd); shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument '$1' (see --help)" >&2; exit 64 ;;
  esac
done

# shellcheck source=scripts/lib/prereqs.sh
. scripts/lib/prereqs.sh
ensure_runtime_prereqs
apt_ensure nbdkit fio libnbd-bin jq gnuplot-nox python3 procps

if [[ " $systems " == *" kernel-zram "* ]] && { [ "$(id -u)" -ne 0 ] || [ ! -e /sys/class/zram-control/hot_add ]; }; then
  echo "kernel zram is not available here (needs root and /sys/class/zram-control): leaving it out" >&2
  systems=${systems//kernel-zram/}
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/zramd-bench.XXXXXX")
results="$work/results.tsv"
: > "$results"
zram_dev=""
cleanup() {
  stop_server || true
  if [ -n "$zram_dev" ]; then
    echo 1 > "/sys/block/$zram_dev/reset" 2>/dev/null || true
    echo "${zram_dev#zram}" > /sys/class/zram-control/hot_remove 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# ---- corpora ---------------------------------------------------------------------------------------------
{ read -r swap_corpus; read -r fs_corpus; } < <(scripts/make-corpus.sh --size "$corpus_mib")
corpus_bytes=$(stat -c %s "$swap_corpus")

dotnet build src/ZramDaemon/ZramDaemon.csproj -c Release -nologo -v:q >&2
zramd=(dotnet "$root/src/ZramDaemon/bin/Release/net10.0/zramd.dll")
if [ -n "$baseline" ]; then
  dotnet build "$baseline/src/ZramDaemon/ZramDaemon.csproj" -c Release -nologo -v:q >&2
  systems="$systems zramd-base"
fi
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# Every device is exactly the corpus's size, so that copying it out reads the corpus and nothing else.
# ---- servers ---------------------------------------------------------------------------------------------
server_pid=""
sock="$work/nbd.sock"
ctl="$work/zramd.ctl"

wait_for_socket() {
  for _ in $(seq 1 200); do [ -S "$1" ] && return 0; sleep 0.05; done
  echo "server did not create $1" >&2; return 1
}

start_server() { # SYSTEM
  rm -f "$sock" "$ctl"
  case "$1" in
    zramd|zramd-nodefer|zramd-base|zramd-floor)
      # zramd-nodefer: the same with the deferred-free queue off (every free synchronous), the trims' baseline;
      # the others keep the default capacity.
      local conf="$work/zramd.conf" exe=("${zramd[@]}")
      [ "$1" = zramd-base ] && exe=(dotnet "$baseline/src/ZramDaemon/bin/Release/net10.0/zramd.dll")
      printf '[zram0]\n%s\n' "$([ "$1" = zramd-nodefer ] && echo 'deferred-free-capacity = 0')" > "$conf"
      "${exe[@]}" --config "$conf" --listen "unix:$sock" --control "$ctl" --size "$corpus_bytes" --algorithm lz4 \
        >"$work/zramd.log" 2>&1 &
      server_pid=$!; wait_for_socket "$sock"; wait_for_socket "$ctl" ;;
    nbdkit-sparse|nbdkit-zstd)
      nbdkit -f -U "$sock" memory "$corpus_bytes" "allocator=${1#nbdkit-}" >"$work/nbdkit.log" 2>&1 &
      server_pid=$!; wait_for_socket "$sock" ;;
    kernel-zram)
      zram_dev=zram$(cat /sys/class/zram-control/hot_add)
      echo lz4 > "/sys/block/$zram_dev/comp_algorithm"
      echo "$corpus_bytes" > "/sys/block/$zram_dev/disksize" ;;
  esac
}

stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
  if [ -n "$zram_dev" ]; then
    echo 1 > "/sys/block/$zram_dev/reset"
    echo "${zram_dev#zram}" > /sys/class/zram-control/hot_remove
    zram_dev=""
  fi
}

target() { # what nbdcopy reads and writes for the current system
  if [ -n "$zram_dev" ]; then echo "/dev/$zram_dev"; else echo "nbd+unix:///?socket=$sock"; fi
}

record() { printf '%s\t%s\t%s\t%s\n' "$round" "$system" "$1" "$2" >> "$results"; }

# mem_used_total in bytes: zramd's stats, or the kernel's mm_stat; nothing for nbdkit (it has no such figure).
mem_used_total() {
  case "$system" in
    zramd*) zramd_stat mem_used_total ;;
    kernel-zram) awk '{print $3}' "/sys/block/$zram_dev/mm_stat" ;;
    *) echo "" ;;
  esac
}

zramd_stat() { # FIELD of zram0 in `zramd status --json`
  "${zramd[@]}" status --json --control "$ctl" | jq "[.. | .$1? // empty][0]"
}

# The pool's pages alone, in bytes: zramd's mem_used_total less its slot table and pool metadata (metadata_bytes);
# the kernel's mm_stat mem_used_total is pool pages only already. Compared like for like after trims and compaction.
pool_bytes() {
  case "$system" in
    zramd*) echo "$(zramd_stat mem_used_total) - $(zramd_stat metadata_bytes)" | bc ;;
    kernel-zram) mem_used_total ;;
    *) echo "" ;;
  esac
}

compr_data_size() {
  case "$system" in
    zramd*) zramd_stat compr_data_size ;;
    kernel-zram) awk '{print $2}' "/sys/block/$zram_dev/mm_stat" ;;
    *) echo "" ;;
  esac
}

rss_kib() { # FIELD (VmRSS or VmHWM) of the server process
  [ -n "$server_pid" ] || { echo ""; return; }
  awk -v f="$1:" '$1 == f {print $2}' "/proc/$server_pid/status"
}

seconds_of() { # run a command, print its wall time in seconds
  local start end
  start=$(date +%s.%N); "$@" >/dev/null; end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

fio_run() { # NAME RW BS DEPTH JOBS [extra...] -> records NAME (IOPS or MB/s)
  local name=$1 rw=$2 bs=$3 depth=$4 jobs=$5; shift 5
  local per_job=$(( corpus_bytes / jobs / 4096 * 4096 ))
  local engine
  if [ -n "$zram_dev" ]; then
    engine=(--ioengine=libaio --direct=1 --filename="/dev/$zram_dev")
    [ "$depth" -eq 1 ] && engine=(--ioengine=psync --direct=1 --filename="/dev/$zram_dev")
  else
    engine=(--ioengine=nbd --uri="nbd+unix:///?socket=$sock")
  fi
  fio --name="$name" "${engine[@]}" --rw="$rw" --bs="$bs" --iodepth="$depth" --numjobs="$jobs" \
      --size="$per_job" --offset_increment="$per_job" --group_reporting \
      --time_based --runtime="$runtime" --ramp_time=1 "$@" \
      --output-format=json --output="$work/fio.json" >/dev/null 2>"$work/fio.err" &
  local fio_pid=$!
  # The server's CPU time over the steady part of the run: from after the ramp until shortly before the end.
  local cpu0="" cpu1="" t0 t1
  if [ -n "$server_pid" ]; then
    sleep 1.5
    cpu0=$(server_cpu_ticks); t0=$(date +%s.%N)
    sleep "$(echo "if ($runtime > 1.5) $runtime - 1 else 0.5" | bc -l)"
    cpu1=$(server_cpu_ticks); t1=$(date +%s.%N)
  fi
  wait "$fio_pid" || { cat "$work/fio.err" >&2; return 1; }
  local dir=read; [[ "$rw" == *write* ]] && dir=write
  local iops bw cpus=""
  iops=$(jq ".jobs[0].$dir.iops" "$work/fio.json")
  bw=$(jq ".jobs[0].$dir.bw_bytes" "$work/fio.json")
  # (ifs, not `&&` lists: under set -e a false test as a function's last command fails the whole script)
  if [ -n "$cpu0" ] && [ -n "$cpu1" ]; then
    cpus=$(echo "($cpu1 - $cpu0) / $clk_tck / ($t1 - $t0)" | bc -l)
  fi
  if [ "$bs" = 4k ]; then
    record "$name" "$iops"
    if [ -n "$cpus" ]; then record "cpu_us_per_io_$name" "$(echo "$cpus * 1000000 / $iops" | bc -l)"; fi
  else
    record "$name" "$(echo "$bw / 1000000" | bc -l)"
    if [ -n "$cpus" ]; then record "cpu_ms_per_gb_$name" "$(echo "$cpus * 1000 * 1000000000 / $bw" | bc -l)"; fi
  fi
}

# The server process's CPU time (user and system, all its threads) in clock ticks. Field 2 may hold spaces, so the
# fields are counted from the one after it.
clk_tck=$(getconf CLK_TCK)
server_cpu_ticks() {
  sed 's/.*) //' "/proc/$server_pid/stat" | awk '{print $12 + $13}'
}

# ---- one system, one round ---------------------------------------------------------------------------------
run_system() {
  local gib
  gib=$(echo "$corpus_bytes / 1073741824" | bc -l)
  for corpus in swap fs; do
    local file=$swap_corpus; [ $corpus = fs ] && file=$fs_corpus
    start_server "$system"
    local idle; idle=$(rss_kib VmRSS)
    record "idle_rss_mib" "$(awk -v k="$idle" 'BEGIN { if (k != "") printf "%.1f", k / 1024 }')"
    record "nbdcopy_in_${corpus}_mbps" "$(echo "$corpus_bytes / 1000000 / $(seconds_of nbdcopy "$file" "$(target)")" | bc -l)"
    record "nbdcopy_out_${corpus}_mbps" "$(echo "$corpus_bytes / 1000000 / $(seconds_of nbdcopy "$(target)" "$work/out.bin")" | bc -l)"
    cmp -s "$file" "$work/out.bin" || { echo "$system returned different data for the $corpus corpus" >&2; exit 1; }
    rm -f "$work/out.bin"
    local used; used=$(mem_used_total)
    [ -n "$used" ] && record "mem_used_mib_per_gib_${corpus}" "$(echo "$used / 1048576 / $gib" | bc -l)"
    local rss; rss=$(rss_kib VmRSS)
    [ -n "$rss" ] && record "rss_mib_per_gib_${corpus}" "$(echo "$rss / 1024 / $gib" | bc -l)"
    # How much of the RSS growth while storing the corpus is the pool itself (100 = exactly mem_used_total).
    [ -n "$rss" ] && [ -n "$used" ] && record "rss_growth_pct_of_mem_used_${corpus}" "$(echo "($rss - $idle) * 1024 * 100 / $used" | bc -l)"
    if [ $corpus = swap ]; then
      run_fio_workloads corpus
      record "vmhwm_mib" "$(awk -v k="$(rss_kib VmHWM)" 'BEGIN { if (k != "") printf "%.1f", k / 1024 }')"
      # Memory once the fio rows have rewritten the device (sequential, then random 4 KiB writes of buffers that
      # compress like the corpus), as a swap device that has churned: 5 s first, in which zramd's background drain
      # and compaction run; the kernel's zram compacts only when asked or under memory pressure.
      sleep 5
      used=$(mem_used_total)
      [ -n "$used" ] && record "mem_used_mib_per_gib_rewritten" "$(echo "$used / 1048576 / $gib" | bc -l)"
      rss=$(rss_kib VmRSS)
      [ -n "$rss" ] && record "rss_mib_per_gib_rewritten" "$(echo "$rss / 1024 / $gib" | bc -l)"
    fi
    stop_server
  done
}

# The fio workloads, on the server started for the current system. WRITES: corpus (buffers that compress like the
# corpus) or pattern (zramd-floor: pages the device stores as same-filled, without compressing).
run_fio_workloads() {
  # Reads go over the real corpus just written (on zramd-floor, over the same-filled pages written by run_floor).
  fio_run seq_read_128k read 128k 16 1
  fio_run randread_4k_qd1 randread 4k 1 1
  fio_run randread_4k_qd1_2j randread 4k 1 2
  fio_run randread_4k_qd32 randread 4k 32 1
  fio_run randread_4k_qd32_2j randread 4k 32 2
  # Writes: fio cannot write from a file, so its buffers compress like the corpus does with LZ4.
  local buf=(--buffer_pattern="$floor_pattern")
  if [ "$1" = corpus ]; then
    local ratio pct
    ratio=$(echo "$(compr_data_size_or_default) / $corpus_bytes" | bc -l)
    pct=$(printf '%.0f' "$(echo "(1 - $ratio) * 100" | bc -l)")
    buf=(--buffer_compress_percentage="$pct" --buffer_compress_chunk=4k --refill_buffers)
  fi
  fio_run seq_write_128k write 128k 16 1 "${buf[@]}"
  fio_run randwrite_4k_qd1 randwrite 4k 1 1 "${buf[@]}"
  fio_run randwrite_4k_qd1_2j randwrite 4k 1 2 "${buf[@]}"
  fio_run randwrite_4k_qd32 randwrite 4k 32 1 "${buf[@]}"
  fio_run randwrite_4k_qd32_2j randwrite 4k 32 2 "${buf[@]}"
}

# zramd-floor: the fio workloads and the timed trims only, on a device filled with same-filled pages of a non-zero byte.
floor_pattern=0xa5
run_floor() {
  start_server "$system"
  fio --name=fill --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw=write --bs=128k --iodepth=16 \
      --size="$corpus_bytes" --buffer_pattern="$floor_pattern" >/dev/null 2>"$work/fio.err" || { cat "$work/fio.err" >&2; return 1; }
  local same; same=$(zramd_stat same_pages)
  [ "$same" = $(( corpus_bytes / 4096 )) ] || { echo "zramd-floor: $same same-filled pages after the fill, want $(( corpus_bytes / 4096 ))" >&2; return 1; }
  run_fio_workloads pattern
  # Trimming same-filled pages frees nothing from a pool: the trims' figure is the requests' own cost (the server's and
  # fio's), the floor for the trims with the queue on.
  time_trims
  stop_server
}

# The LZ4 ratio of the swap-like corpus, measured once on zramd or the kernel; 0.37 (the kernel's figure here)
# until one of them has stored it.
lz4_ratio_bytes=""
compr_data_size_or_default() {
  local c; c=$(compr_data_size)
  if [ -n "$c" ] && [ "$c" != null ] && [ "$c" -gt 0 ]; then lz4_ratio_bytes=$c; fi
  if [ -n "$lz4_ratio_bytes" ]; then echo "$lz4_ratio_bytes"; else echo "$corpus_bytes * 0.37" | bc -l; fi
}

# ---- trims with and without deferred free, then compaction (zramd and the kernel) ----------------------
# The timed trims on the server started for the current system, which holds data: trim_half_s.
time_trims() {
  local trim_engine=(--ioengine=nbd --uri="nbd+unix:///?socket=$sock")
  [ -n "$zram_dev" ] && trim_engine=(--ioengine=psync --filename="/dev/$zram_dev")
  # A warm-up job of random reads first, on its own connection (reads change nothing stored). A daemon's first fio
  # connections pay a one-time start-up (it faulted in 550 pages during the trims then, 160 after a read job): the
  # same trims took 22-54 ms on zramd's first fio connection and 16-20 ms after one read job, 48-55 and 42-49 with
  # the queue off (4 rounds). The fio rows leave such start-up out with --ramp_time, which a fixed-size job cannot use.
  fio --name=warmup "${trim_engine[@]}" --rw=randread --bs=4k --iodepth=16 --size="$corpus_bytes" --io_size=8M \
      >/dev/null 2>"$work/fio.err" || { cat "$work/fio.err" >&2; return 1; }
  # Half of the device in random 256 KiB extents (64 slots a request), so that the cost of freeing shows
  # next to the cost of a request; with the queue the frees leave the request path.
  # fio's own runtime of the trims, not the command's wall time: starting fio and connecting cost about half
  # a second, several times the trims themselves, and would hide the difference.
  fio --name=trim "${trim_engine[@]}" --rw=randtrim --bs=256k --iodepth=16 \
      --size="$corpus_bytes" --io_size=$(( corpus_bytes / 2 )) --randrepeat=1 \
      --output-format=json --output="$work/trim.json" >/dev/null 2>"$work/fio.err" || { cat "$work/fio.err" >&2; return 1; }
  local t; t=$(jq '.jobs[0].trim.runtime / 1000' "$work/trim.json")
  record "trim_half_s" "$t"
}

run_compaction() {
  start_server "$system"
  nbdcopy "$swap_corpus" "$(target)"
  time_trims
  # Let queued frees drain (zramd's device thread drains its queue every second), for every system alike.
  sleep 1.5
  local used compr
  used=$(mem_used_total); compr=$(compr_data_size)
  record "overhead_after_trim_pct" "$(echo "($used - $compr) * 100 / $compr" | bc -l)"
  record "overhead_pool_after_trim_pct" "$(echo "($(pool_bytes) - $compr) * 100 / $compr" | bc -l)"
  local c
  if [ "$system" != kernel-zram ]; then
    # The daemon's own compaction time, not the CLI's start-up: the delta of compaction_time_us.
    local before after
    before=$(zramd_stat compaction_time_us)
    "${zramd[@]}" compact --control "$ctl" >/dev/null
    after=$(zramd_stat compaction_time_us)
    c=$(echo "($after - $before) / 1000000" | bc -l)
  else
    c=$(seconds_of sh -c "echo 1 > /sys/block/$zram_dev/compact")
  fi
  record "compact_s" "$c"
  used=$(mem_used_total); compr=$(compr_data_size)
  record "overhead_after_compact_pct" "$(echo "($used - $compr) * 100 / $compr" | bc -l)"
  record "overhead_pool_after_compact_pct" "$(echo "($(pool_bytes) - $compr) * 100 / $compr" | bc -l)"
  stop_server
}

apt_ensure bc
read -r -a order <<< "$systems"
for round in $(seq 1 "$rounds"); do
  # Rotated by one system a round.
  shift_by=$(( (round - 1) % ${#order[@]} ))
  for system in "${order[@]:shift_by}" "${order[@]:0:shift_by}"; do
    echo "round $round: $system" >&2
    if [ "$system" = zramd-floor ]; then run_floor; continue; fi
    run_system
    case "$system" in zramd|zramd-base|kernel-zram) run_compaction ;; esac
  done
  if [[ " $systems " == *" zramd "* ]]; then
    system=zramd-nodefer
    echo "round $round: $system (trims only)" >&2
    run_compaction
  fi
done

mkdir -p "$out"
cp "$results" "$out/benchmarks.tsv"   # the raw figures, to redraw the report: report.py benchmarks.tsv DIR ...
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
python3 scripts/bench/report.py "$results" "$out" "$rounds" "$runtime" "${corpus_mib} MiB" "$load_before" "$load_after"
