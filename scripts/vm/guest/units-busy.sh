# units-busy: run by guest/systemd.sh under Debian's systemd as PID 1, with zramd.service enabled (and only it)
# and the units of systemd/ installed as the package installs them. Config: zram0 128M, zram1 64M (the units'
# exports), zram2, zram3, zram4 64M (the admin's own).
# 1. zramd-swap.service and mnt-zram.mount started, then `systemctl restart zramd.service`: what is active after.
# 2. /dev/nbd0 (zramd-swap's device) already holds the admin's own ext4, mounted (zram2): zramd-swap.service is
#    started and must fail without taking /dev/nbd0 away (its ExecStopPost runs after a failed start).
# 3. /dev/nbd1 (zramd-scratch's device) already holds the admin's own swap (zram3): mnt-zram.mount is started and
#    must fail without taking /dev/nbd1 away.
# 4. `zramd detach /dev/nbd2` while /dev/nbd2 is active swap (zram4).
# Reports each step as ZT lines and powers off.
set -u
zt() { echo "ZT: $1=$2"; }
state() { systemctl show -p ActiveState --value "$1"; }
nbd_swaps() { grep -o '^/dev/nbd[0-9]*' /proc/swaps | tr '\n' ' '; }
SOCK=/run/zramd/zramd.sock
# size_settled NBD: /sys/block/NBD/size once a detach (asynchronous in the kernel) would have shown.
size_settled() { sleep 2; cat "/sys/block/$1/size"; }
# size_detached NBD: /sys/block/NBD/size once it is 0, or after 60 s (where a detach is expected: polled, as the
# emulated guest may take long).
size_detached() { for _ in $(seq 600); do [ "$(cat "/sys/block/$1/size")" = 0 ] && break; sleep 0.1; done; cat "/sys/block/$1/size"; }
# read_rc NBD: whether the device still answers a direct read (a detached one fails it, though its size stays while
# swap or a mount holds it open).
read_rc() { dd if="/dev/$1" of=/dev/null bs=4096 count=16 iflag=direct 2>/dev/null && echo 0 || echo 1; }

for _ in $(seq 240); do [ "$(state zramd.service)" = active ] && break; sleep 0.5; done
zt boot.zramd "$(state zramd.service)"

# 1. Restart of zramd.service while its swap and scratch units are active.
systemctl start zramd-swap.service mnt-zram.mount
zt start_units_rc $?
for u in zramd-swap.service zramd-scratch.service mnt-zram.mount; do zt "before_restart.$u" "$(state "$u")"; done
pid_before=$(systemctl show -p MainPID --value zramd.service)
timeout 600 systemctl restart zramd.service
zt restart_rc $?
# zramd-swap and the mount come back by restart propagation (BindsTo=); give the jobs time to finish.
for _ in $(seq 120); do systemctl list-jobs --no-legend | grep -q . || break; sleep 0.5; done
for u in zramd.service zramd-swap.service zramd-scratch.service mnt-zram.mount; do zt "after_restart.$u" "$(state "$u")"; done
zt after_restart.pid_changed "$([ "$(systemctl show -p MainPID --value zramd.service)" != "$pid_before" ] && echo yes || echo no)"
zt after_restart.swaps "$(nbd_swaps)"
zt after_restart.scratch_mount "$(grep ' /mnt/zram ' /proc/mounts | cut -d' ' -f1-3)"
systemctl stop mnt-zram.mount zramd-scratch.service zramd-swap.service
zt stop_units_rc $?
systemctl reset-failed 2>/dev/null
zt clean.nbd0_size "$(size_detached nbd0)"
zt clean.nbd1_size "$(size_detached nbd1)"

# 2. The admin's own ext4 on /dev/nbd0 (zram2), mounted, then zramd-swap.service started.
mkdir -p /tmp/own
zramd attach zram2 /dev/nbd0 --socket "$SOCK" && /usr/sbin/mkfs.ext4 -q -F /dev/nbd0 && mount /dev/nbd0 /tmp/own &&
  head -c 8M /dev/urandom >/tmp/own/data && sync && md5sum </tmp/own/data >/tmp/own.md5
zt own_mount_rc $?
systemctl start zramd-swap.service
zt busy_mount.start_rc $?
zt busy_mount.swap_unit "$(state zramd-swap.service)"
zt busy_mount.nbd0_size "$(size_settled nbd0)"
zt busy_mount.still_mounted "$(grep -q '^/dev/nbd0 /tmp/own ' /proc/mounts && echo yes || echo no)"
zt busy_mount.read_rc "$(read_rc nbd0)"
# What the admin's filesystem holds, read from the device rather than the page cache.
sync
echo 3 >/proc/sys/vm/drop_caches
zt busy_mount.data_same "$([ "$(md5sum </tmp/own/data 2>/dev/null)" = "$(cat /tmp/own.md5)" ] && echo yes || echo no)"
journalctl -u zramd-swap.service --no-pager -o cat 2>/dev/null | sed 's/^/zramd-swap| /'

# 3. The admin's own swap on /dev/nbd1 (zram3), then mnt-zram.mount (and so zramd-scratch.service) started.
zramd attach zram3 /dev/nbd1 --socket "$SOCK" && /usr/sbin/mkswap /dev/nbd1 >/dev/null && /usr/sbin/swapon --priority 5 /dev/nbd1
zt own_swap_rc $?
systemctl start mnt-zram.mount
zt busy_swap.start_rc $?
zt busy_swap.scratch_unit "$(state zramd-scratch.service)"
zt busy_swap.nbd1_size "$(size_settled nbd1)"
zt busy_swap.swaps "$(nbd_swaps)"
zt busy_swap.read_rc "$(read_rc nbd1)"
journalctl -u zramd-scratch.service --no-pager -o cat 2>/dev/null | sed 's/^/zramd-scratch| /'

# 4. `zramd detach` of a device that is active swap.
zramd attach zram4 /dev/nbd2 --socket "$SOCK" && /usr/sbin/mkswap /dev/nbd2 >/dev/null && /usr/sbin/swapon --priority 1 /dev/nbd2
zt own_swap2_rc $?
zramd detach /dev/nbd2 >/tmp/detach.log 2>&1
zt detach_swap.rc $?
zt detach_swap.output "$(head -n 1 /tmp/detach.log)"
zt detach_swap.nbd2_size "$(size_settled nbd2)"
zt detach_swap.swaps "$(nbd_swaps)"
zt detach_swap.read_rc "$(read_rc nbd2)"

zt systemd.failed "$(systemctl list-units --failed --plain --no-legend | cut -d' ' -f1 | tr '\n' ' ')"
echo "ZT-END rc=0"
# Straight off: a clean shutdown may wait on swap whose device is gone (what this test looks for).
timeout 20 sync
systemctl poweroff -ff 2>/dev/null || echo o >/proc/sysrq-trigger
