# attach: zramd runs in the guest (a self-contained publish at /opt/zramd/zramd) and backs the guest's own swap.
# 1. The daemon starts with `attach = /dev/nbd0` for zram0: it binds itself to the kernel device at start
#    (a socketpair it serves with simple replies); a raw pattern goes through it.
# 2. `zramd attach zram1 /dev/nbd1` (netlink, no nbd-client): swap on it with discard, a fill far larger than
#    its memory cgroup, every page verified, swapoff, `zramd detach`.
# 3. The ioctl fallback (`--ioctl`, NBD_SET_SOCK ... NBD_DO_IT) on /dev/nbd2 carries a raw pattern.
# 4. zramd's counters, then SIGTERM: the daemon detaches /dev/nbd0 itself on its way out.
. /zt/lib.sh
zramd_start <<CONF
[zram0]
zram-size = 64
attach = /dev/nbd0
[zram1]
zram-size = ${ZT_SWAP_MIB:-512}
CONF
# ZT_WATCH=SECONDS on the kernel command line: the daemon's kernel stacks and meminfo every SECONDS (a stall's cause).
[ -n "${ZT_WATCH:-}" ] && /zt/watch "$(cat /tmp/zramd.pid)" "$ZT_WATCH" &
zramd_wait_nbd0
zt attach.daemon_ready_uptime "$(cut -d' ' -f1 /proc/uptime)"
zt attach.daemon_rss_kib "$(awk '/^VmRSS:/ { print $2 }' /proc/$(cat /tmp/zramd.pid)/status)"
zt attach.config_size_bytes "$(blockdev --getsize64 /dev/nbd0)"
roundtrip /dev/nbd0 5 attach.config

$ZRAMD attach zram1 /dev/nbd1 --socket "$SERVER" >/tmp/attach.log 2>&1 && rc=0 || rc=$?
cat /tmp/attach.log
zt attach.netlink_rc "$rc"
zt attach.netlink_output "$(head -n 1 /tmp/attach.log)"
zt attach.size_bytes "$(blockdev --getsize64 /dev/nbd1)"
/usr/sbin/mkswap /dev/nbd1 >/dev/null
/usr/sbin/swapon --discard --priority 100 /dev/nbd1
zt attach.mem_total_kib "$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
# The fill runs in a memory cgroup (memory.max ZT_FILL_LIMIT_MIB): it is swapped out by its own cgroup's reclaim
# while the guest keeps free memory for the daemon. Without a limit the whole guest runs out of memory, and a
# daemon that must fault in fresh pages to store a swapped page deadlocks (see docs/device.md, "Swap on zramd").
mount -t cgroup2 none /sys/fs/cgroup
echo +memory >/sys/fs/cgroup/cgroup.subtree_control
mkdir /sys/fs/cgroup/fill
echo $((${ZT_FILL_LIMIT_MIB:-48} * 1024 * 1024)) >/sys/fs/cgroup/fill/memory.max
sh -c 'echo $$ >/sys/fs/cgroup/fill/cgroup.procs && exec /zt/memfill "$@"' memfill "${ZT_FILL_MIB:-224}" "${ZT_FILL_RANDOM:-1024}" && rc=0 || rc=$?
zt attach.memfill_rc "$rc"
# Every thread of the daemon, the runtime's own included, is an I/O flusher (PF_MEMALLOC_NOIO, 0x80000 in the
# flags field of /proc/PID/task/TID/stat, the 7th after the command name).
threads=0
ordinary=
# A thread that ends between the listing and the read of its files is skipped (it once showed as two empty names).
for t in /proc/$(cat /tmp/zramd.pid)/task/*; do
  stat=$(cat "$t/stat" 2>/dev/null) && comm=$(cat "$t/comm" 2>/dev/null) || continue
  flags=$(echo "$stat" | sed 's/.*) //' | cut -d' ' -f7)
  threads=$((threads + 1))
  [ $((flags & 0x80000)) -ne 0 ] || ordinary="$ordinary$(echo "$comm" | tr ' ' _),"
done
zt attach.daemon_threads "$threads"
zt attach.daemon_threads_not_io_flusher "${ordinary:-none}"
/usr/sbin/swapoff /dev/nbd1 && rc=0 || rc=$?
zt attach.swapoff_rc "$rc"
$ZRAMD detach /dev/nbd1 && rc=0 || rc=$?
zt attach.detach_rc "$rc"
i=0
while [ "$(cat /sys/block/nbd1/size)" != 0 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
zt attach.size_after_detach "$(cat /sys/block/nbd1/size)"

# The ioctl path: the attach command stays in the foreground (NBD_DO_IT) until detached.
$ZRAMD attach zram1 /dev/nbd2 --socket "$SERVER" --ioctl >/tmp/attach-ioctl.log 2>&1 &
ioctl_pid=$!
i=0
while { [ "$(cat /sys/block/nbd2/size)" = 0 ] || [ ! -s /tmp/attach-ioctl.log ]; } && [ $i -lt 600 ]; do
  sleep 0.1
  i=$((i + 1))
done
zt attach.ioctl_output "$(head -n 1 /tmp/attach-ioctl.log)"
roundtrip /dev/nbd2 3 attach.ioctl
$ZRAMD detach /dev/nbd2 && rc=0 || rc=$?
zt attach.ioctl_detach_rc "$rc"
wait "$ioctl_pid" && rc=0 || rc=$?
cat /tmp/attach-ioctl.log
zt attach.ioctl_exit "$rc"

$ZRAMD status --json --control "$CTL" >/tmp/status.json && rc=0 || rc=$?
zt attach.status_rc "$rc"
zt attach.status_json "$(tr -d '\n' </tmp/status.json)"

# Stop: the daemon detaches the device it attached itself.
zt attach.nbd0_size_before_stop "$(cat /sys/block/nbd0/size)"
kill -TERM "$(cat /tmp/zramd.pid)"
wait "$(cat /tmp/zramd.pid)" && rc=0 || rc=$?
zt attach.daemon_exit "$rc"
zt attach.nbd0_size_after_stop "$(cat /sys/block/nbd0/size)"
kill "$diag" 2>/dev/null || true
sed 's/^/zramd| /' /tmp/zramd.log
