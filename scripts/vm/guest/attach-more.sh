# attach-more: zramd in the guest (plain /init, no systemd), the attach and detach verbs where they touch devices in
# use.
# 1. `zramd attach --ioctl` for swap stays in the foreground for as long as the device lives: its protection
#    against the OOM killer and its locked memory.
# 2. `zramd attach NAME` without a device (netlink: the kernel picks one).
# 3. `zramd detach /dev/nbd01` (no such device) while /dev/nbd1 is attached.
. /zt/lib.sh
zramd_start <<CONF
[zram0]
zram-size = 64
attach = /dev/nbd0
[zram1]
zram-size = 64
CONF
zramd_wait_nbd0
zt more.daemon_up "$(cat /sys/block/nbd0/size)"

# 1. The ioctl attach process, which holds the device.
$ZRAMD attach zram1 /dev/nbd2 --socket "$SERVER" --ioctl >/tmp/attach-ioctl.log 2>&1 &
ioctl_pid=$!
i=0
while { [ "$(cat /sys/block/nbd2/size)" = 0 ] || [ ! -s /tmp/attach-ioctl.log ]; } && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
zt more.ioctl_output "$(head -n 1 /tmp/attach-ioctl.log)"
zt more.ioctl_oom_score_adj "$(cat /proc/$ioctl_pid/oom_score_adj)"
zt more.ioctl_vmlck_kib "$(awk '/^VmLck:/ { print $2 }' /proc/$ioctl_pid/status)"
zt more.ioctl_vmrss_kib "$(awk '/^VmRSS:/ { print $2 }' /proc/$ioctl_pid/status)"
$ZRAMD detach /dev/nbd2 >/dev/null 2>&1 || true
wait "$ioctl_pid" && rc=0 || rc=$?
zt more.ioctl_exit "$rc"

# 2. No device named: the kernel picks a free one.
$ZRAMD attach zram1 --socket "$SERVER" >/tmp/attach-any.log 2>&1 && rc=0 || rc=$?
cat /tmp/attach-any.log
zt more.any_rc "$rc"
zt more.any_output "$(head -n 1 /tmp/attach-any.log)"
any=$(grep -o '/dev/nbd[0-9]*' /tmp/attach-any.log | head -n 1)
zt more.any_size "$([ -n "$any" ] && blockdev --getsize64 "$any" || echo none)"
if [ -n "$any" ]; then $ZRAMD detach "$any" && rc=0 || rc=$?; else rc=none; fi
zt more.any_detach_rc "$rc"

# 3. A device name with a leading zero: /dev/nbd01 does not exist.
$ZRAMD attach zram1 /dev/nbd1 --socket "$SERVER" >/dev/null 2>&1 && rc=0 || rc=$?
zt more.nbd1_attach_rc "$rc"
$ZRAMD detach /dev/nbd01 >/tmp/detach01.log 2>&1 && rc=0 || rc=$?
zt more.detach01_rc "$rc"
zt more.detach01_output "$(head -n 1 /tmp/detach01.log)"
sleep 1
zt more.nbd1_size_after_detach01 "$(cat /sys/block/nbd1/size)"
$ZRAMD detach /dev/nbd1 >/dev/null 2>&1 || true

kill -TERM "$(cat /tmp/zramd.pid)" 2>/dev/null || true
sed 's/^/zramd| /' /tmp/zramd.log
