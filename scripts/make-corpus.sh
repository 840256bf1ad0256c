#!/usr/bin/env bash
# Builds the two corpora the memory benchmark stores through the device:
#   swap-like-<N>M.bin: the resident private anonymous pages of real python3, node and dotnet processes
#                       holding real heaps (read through /proc/PID/pagemap and /proc/PID/mem; needs root);
#   fs-like-<N>M.bin:   the first N MiB of a tar of installed system files (/usr/lib, /usr/share).
# Usage: scripts/make-corpus.sh [--size MIB] [--out DIR] [--only swap|fs] [--force]
# Defaults: 512 MiB each into .cache/corpus/. Existing files of the right size are kept unless --force.
# Prints the paths of the two files, one a line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
size_mib=512
out="$root/.cache/corpus"
only=""
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size_mib=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --force) force=1; shift ;;
    *) echo "make-corpus.sh: unknown argument '$1' (use --size MIB, --out DIR, --only swap|fs, --force)" >&2; exit 64 ;;
  esac
done
case "$size_mib" in ''|*[!0-9]*) echo "make-corpus.sh: --size must be a whole number of MiB, not '$size_mib'" >&2; exit 64 ;; esac
[ "$size_mib" -ge 1 ] || { echo "make-corpus.sh: --size must be at least 1" >&2; exit 64; }
case "$only" in ''|swap|fs) ;; *) echo "make-corpus.sh: --only takes swap or fs, not '$only'" >&2; exit 64 ;; esac

# shellcheck source=scripts/lib/prereqs.sh
. "$root/scripts/lib/prereqs.sh"
# procps: pgrep finds the program under `dotnet run`; without it the SDK driver's memory would be dumped instead.
ensure_dotnet_sdk
apt_ensure python3 nodejs tar procps

mkdir -p "$out"
bytes=$((size_mib * 1024 * 1024))
swap="$out/swap-like-${size_mib}M.bin"
fs="$out/fs-like-${size_mib}M.bin"
lib="$root/scripts/lib/corpus"

up_to_date() { [ "$force" -eq 0 ] && [ -f "$1" ] && [ "$(stat -c %s "$1")" -eq "$bytes" ]; }

make_swap() {
  up_to_date "$swap" && return 0
  [ "$(id -u)" -eq 0 ] || { echo "make-corpus.sh: the swap-like corpus reads other processes' memory: run as root" >&2; exit 1; }
  local work pids=() fds=() fifo i fd
  work=$(mktemp -d "${TMPDIR:-/tmp}/zramd-corpus.XXXXXX")
  # Each program builds a third of the corpus plus a margin: not every resident page is a private anonymous one.
  local per=$(( size_mib / 3 + size_mib / 5 + 24 ))
  # The .NET program is a file-based app; it is built outside the repository so that the project's build
  # settings (warnings as errors, analyzers) do not apply to it.
  cp "$lib/heap.cs" "$work/heap.cs"
  local -a cmds=("python3 $lib/heap.py $per" "node --expose-gc --max-old-space-size=$((per * 4)) $lib/heap.js $per" "dotnet run --file $work/heap.cs -- $per")
  cleanup() {
    for fd in "${fds[@]}"; do exec {fd}>&-; done
    fds=()
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
  }
  trap cleanup EXIT
  for i in "${!cmds[@]}"; do
    fifo="$work/in.$i"
    mkfifo "$fifo"
    # The program holds its heap until its stdin (this fifo) closes.
    ${cmds[$i]} <"$fifo" >"$work/out.$i" 2>"$work/err.$i" &
    pids+=("$!")
    exec {fd}>"$fifo"
    fds+=("$fd")
  done
  for i in "${!cmds[@]}"; do
    until grep -q '^ready' "$work/out.$i" 2>/dev/null; do
      kill -0 "${pids[$i]}" 2>/dev/null || { echo "make-corpus.sh: '${cmds[$i]}' failed:" >&2; cat "$work/err.$i" >&2; exit 1; }
      sleep 1
    done
    echo "  ${cmds[$i]%% *}: $(cat "$work/out.$i")" >&2
  done
  # dotnet run leaves the program as a child process: dump that, not the SDK driver.
  local dotnet_pid=${pids[2]} child
  child=$(pgrep -P "$dotnet_pid" | head -n 1 || true)
  [ -n "$child" ] && dotnet_pid=$child
  python3 "$lib/dump_anon.py" "$bytes" "$swap.tmp" "${pids[0]}" "${pids[1]}" "$dotnet_pid"
  mv "$swap.tmp" "$swap"
  cleanup
  trap - EXIT
}

make_fs() {
  up_to_date "$fs" && return 0
  # tar exits non-zero when head closes the pipe early; what matters is that head got enough bytes.
  (tar -cf - --warning=none /usr/lib /usr/share 2>/dev/null || true) | head -c "$bytes" >"$fs.tmp"
  [ "$(stat -c %s "$fs.tmp")" -eq "$bytes" ] || { echo "make-corpus.sh: /usr/lib and /usr/share hold less than $size_mib MiB" >&2; exit 1; }
  mv "$fs.tmp" "$fs"
}

[ "$only" = fs ] || make_swap
[ "$only" = swap ] || make_fs
[ "$only" = fs ] || echo "$swap"
[ "$only" = swap ] || echo "$fs"
