#!/usr/bin/env python3
"""Turns compare.sh's results (round, system, metric, value) into one table of medians with min/max and the
ratios zramd / peer, written to BENCHMARKS.md with the date and machine, and a gnuplot chart."""
import datetime
import os
import platform
import statistics
import subprocess
import sys
from collections import defaultdict

results, out_dir, rounds, runtime, corpus_size = sys.argv[1:6]
load_before, load_after = (sys.argv[6:8] + ["?", "?"])[:2]

values = defaultdict(list)
systems, metrics = [], []
with open(results) as f:
    for line in f:
        _round, system, metric, value = line.rstrip("\n").split("\t")
        if value in ("", "null"):
            continue
        if system not in systems:
            systems.append(system)
        if metric not in metrics:
            metrics.append(metric)
        values[(system, metric)].append(float(value))

# Higher is better for throughput; lower is better for memory, time, overhead and CPU time.
LOWER_IS_BETTER = ("mem_", "rss_", "idle_rss", "vmhwm", "_s", "overhead", "cpu_")


def lower_is_better(metric):
    return any(metric.startswith(p) or metric.endswith(p) for p in LOWER_IS_BETTER)


def cell(system, metric):
    v = values.get((system, metric))
    if not v:
        return "", None
    med = statistics.median(v)
    return f"{fmt(med)} ({fmt(min(v))}–{fmt(max(v))})", med


def fmt(x):
    """Three significant figures or more: 70,843 / 538 / 16.8 / 0.0755."""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 1:
        return f"{x:.1f}"
    return f"{x:.3g}"


peers = [s for s in systems if s != "zramd"]

# The targets of issue #8, checked on this run's medians: (what, metric, peer or None, test on the value, wanted).
# For a peer the value is the ratio zramd / peer; without one it is zramd's own figure.
FOUR_K = [m for m in metrics if m.startswith(("randread_4k", "randwrite_4k"))]
FIO = FOUR_K + ["seq_read_128k", "seq_write_128k"]
TARGETS = (
    [("vs nbdkit zstd: seq write", "seq_write_128k", "nbdkit-zstd", ">=", 3.0),
     ("vs nbdkit zstd: seq read", "seq_read_128k", "nbdkit-zstd", ">=", 3.0)]
    + [(f"vs nbdkit zstd: {m}", m, "nbdkit-zstd", ">=", 4.0) for m in FOUR_K]
    + [(f"vs nbdkit sparse: {m}", m, "nbdkit-sparse", ">=", 0.9) for m in FOUR_K]
    + [("vs nbdkit sparse: seq write", "seq_write_128k", "nbdkit-sparse", ">=", 0.45),
       ("vs nbdkit sparse: seq read", "seq_read_128k", "nbdkit-sparse", ">=", 0.6),
       ("vs kernel zram: seq write", "seq_write_128k", "kernel-zram", ">=", 0.75),
       ("vs kernel zram: seq read", "seq_read_128k", "kernel-zram", ">=", 0.8),
       ("memory per GiB, swap-like, vs kernel", "mem_used_mib_per_gib_swap", "kernel-zram", "<=", 1.0),
       ("memory per GiB, fs-like, vs kernel", "mem_used_mib_per_gib_fs", "kernel-zram", "<=", 1.0),
       ("RSS growth / mem_used_total, swap-like (%)", "rss_growth_pct_of_mem_used_swap", None, "within5", 100.0),
       ("RSS growth / mem_used_total, fs-like (%)", "rss_growth_pct_of_mem_used_fs", None, "within5", 100.0),
       ("idle RSS (MiB)", "idle_rss_mib", None, "<", 60.0),
       # Like for like: pool pages on both sides (the kernel's mm_stat mem_used_total is pool pages only).
       ("overhead after compaction vs kernel's, pool pages only (like for like)", "overhead_pool_after_compact_pct",
        "kernel-zram", "diff<=", 0.0),
       # zramd all-in (its mem_used_total: pool + slot table + pool metadata) against the kernel's pool pages.
       ("overhead after compaction vs kernel's, zramd's metadata counted, the kernel's not", "overhead_after_compact_pct",
        "kernel-zram", "diff<=", 0.0),
       ("trims without deferred free / with (x faster)", "trim_half_s", "zramd-nodefer", "inverse>=", 3.0)]
)
header = ["metric"] + systems + [f"zramd / {p}" for p in peers]
rows = []
medians = {}
for m in metrics:
    row = [m + (" ↓" if lower_is_better(m) else " ↑")]
    for s in systems:
        text, med = cell(s, m)
        medians[(s, m)] = med
        row.append(text)
    for p in peers:
        a, b = medians.get(("zramd", m)), medians.get((p, m))
        row.append(f"{a / b:.2f}x" if a is not None and b else "")
    rows.append(row)


# zramd-floor is zramd with the device's work taken out (same-filled pages of a non-zero byte, read and written): its figure
# over a peer's is the ratio zramd's server and fio's nbd engine could reach here if the device cost nothing.
CEILING = "zramd-floor"


def ceiling(metric, peer):
    floor, theirs = medians.get((CEILING, metric)), medians.get((peer, metric))
    return f"{floor / theirs:.2f}x" if floor and theirs else ""


def check_targets():
    out = []
    for what, metric, peer, test, wanted in TARGETS:
        mine = medians.get(("zramd", metric))
        theirs = medians.get((peer, metric)) if peer else None
        if mine is None or (peer and not theirs):
            continue
        if test == ">=":
            value, ok, shown = mine / theirs, mine / theirs >= wanted, f"{mine / theirs:.2f}x (want >= {wanted}x)"
            if CEILING in systems and metric in FIO:
                shown += f"; {CEILING}: {ceiling(metric, peer)}"
        elif test == "<=":
            value, ok, shown = mine / theirs, mine / theirs <= wanted, f"{mine / theirs:.2f}x (want <= {wanted}x)"
        elif test == "inverse>=":
            value = theirs / mine if mine else 0
            ok, shown = value >= wanted, f"{value:.2f}x (want >= {wanted}x)"
            floor = medians.get((CEILING, metric))
            if floor:
                shown += f"; {CEILING}: {theirs / floor:.2f}x"
        elif test == "diff<=":
            ok, shown = mine - theirs <= wanted, f"{mine:.1f}% vs {theirs:.1f}% (want zramd <= kernel)"
        elif test == "within5":
            ok, shown = abs(mine - wanted) <= 5, f"{mine:.1f}% (want 95-105%)"
        else:
            ok, shown = mine < wanted, f"{mine:.1f} (want < {wanted})"
        out.append([what, shown, "met" if ok else "**missed**"])
    return out


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


cpu = "unknown CPU"
try:
    with open("/proc/cpuinfo") as f:
        cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
except (OSError, StopIteration):
    pass
machine = f"{platform.node()}: {os.cpu_count()} cores, {cpu}, Linux {platform.release()}"
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

md = f"""# Benchmarks

Produced by `scripts/bench/compare.sh` on {now}.
Machine: {machine}; load average {load_before} at the start, {load_after} at the end (the machine is shared,
so absolute figures move; compare the ratios, which come from interleaved runs).
{rounds} rounds, systems interleaved in each round, each round starting one system further on; fio runs of {runtime} s; corpora of {corpus_size}.
Each cell: median (min–max). ↑ higher is better, ↓ lower is better. Ratios are zramd's median over the peer's.
zramd-floor (zramd reading and writing pages that repeat one non-zero byte: no compression, no pool, the data still sent) runs the fio rows
and the timed trims only. In the targets, "zramd-floor: Nx" after a ratio is its figure over the same peer: what zramd's server and
fio's nbd engine allow on this machine if the device's work cost nothing.
cpu_ms_per_gb_* and cpu_us_per_io_*: the server process's CPU time (user and system, all threads) per GB moved or per
request over the steady part of that fio row, from /proc; none for kernel zram, whose work runs in fio's own calls.
It is the work behind each rate, which the rate alone does not show (busy polling counts: it is CPU the server takes).
Memory per GiB stored counts mem_used_total (zramd: pool + slot table + pool metadata; kernel: pool only); *_rewritten:
the same 5 s after the fio rows rewrote the swap-like device (neither side asked to compact).
Overhead = (memory - compr_data_size) / compr_data_size: overhead_* with mem_used_total as above, overhead_pool_*
with pool pages only on both sides (zramd's mem_used_total less metadata_bytes), the like-for-like figure.

{table(header, rows)}

## Targets (issue #8), on these medians

{table(["target", "this run", "verdict"], check_targets())}

![throughput and memory](benchmarks.png)
"""
# Hand-written analysis below the marker survives a rerun (it says which run it was written for).
MARKER = "<!-- notes: kept by report.py -->"
doc = os.path.join(out_dir, "BENCHMARKS.md")
notes = ""
if os.path.exists(doc):
    with open(doc) as f:
        old = f.read()
    if MARKER in old:
        notes = "\n" + MARKER + old.split(MARKER, 1)[1]
with open(doc, "w") as f:
    f.write(md + notes)
print(table(header, rows))
print()
print(table(["target", "this run", "verdict"], check_targets()))

# Chart: throughput figures and memory per GiB side by side, one bar per system.
throughput = [m for m in metrics if not lower_is_better(m)]
memory = [m for m in metrics if m.startswith(("mem_used", "rss_mib_per_gib"))]
dat = os.path.join(out_dir, ".benchmarks.dat")
with open(dat, "w") as f:
    for block in (throughput, memory):
        f.write("metric " + " ".join(systems) + "\n")
        for m in block:
            f.write(m + " " + " ".join(str(medians.get((s, m)) or 0) for s in systems) + "\n")
        f.write("\n\n")
png = os.path.join(out_dir, "benchmarks.png")
# A run of zramd-floor alone has no memory figures, and gnuplot refuses an empty panel.
memory_panel = f"""
unset logscale y
set title 'MiB of RAM per GiB stored; lower is better'
plot for [i=2:{len(systems) + 1}] '{dat}' index 1 using i:xtic(1) title columnheader(i)
""" if memory else ""
script = f"""
set terminal pngcairo size 1400,{900 if memory else 450} noenhanced
set output '{png}'
set multiplot layout {2 if memory else 1},1
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key outside right
set xtics rotate by -30
set grid ytics
set logscale y
set title 'Throughput (MB/s for 128k and nbdcopy, IOPS for 4k), log scale; higher is better'
plot for [i=2:{len(systems) + 1}] '{dat}' index 0 using i:xtic(1) title columnheader(i)
{memory_panel}unset multiplot
"""
subprocess.run(["gnuplot"], input=script, text=True, check=True)
os.remove(dat)
print(f"wrote {os.path.join(out_dir, 'BENCHMARKS.md')} and {png}")
