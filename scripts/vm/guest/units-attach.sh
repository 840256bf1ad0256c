# units-attach: run by guest/systemd.sh under Debian's systemd as PID 1 with zramd.service enabled and
# /etc/zramd/zramd.conf giving zram0 `attach = /dev/nbd0`: the daemon binds the device itself inside the unit's
# sandbox (CapabilityBoundingSet, SystemCallFilter, RestrictAddressFamilies, DevicePolicy). Reports the unit, the
# device and a pattern through it, then `systemctl stop zramd.service`.
set -u
zt() { echo "ZT: $1=$2"; }
state() { systemctl show -p ActiveState --value "$1"; }
for _ in $(seq 240); do case $(state zramd.service) in active | failed | inactive) break ;; esac; sleep 0.5; done
zt ua.zramd "$(state zramd.service)"
zt ua.result "$(systemctl show -p Result --value zramd.service)"
zt ua.nrestarts "$(systemctl show -p NRestarts --value zramd.service)"
zt ua.nbd0_size "$(cat /sys/block/nbd0/size)"
if [ "$(cat /sys/block/nbd0/size)" != 0 ]; then
  head -c 4M /dev/urandom >/tmp/pattern
  dd if=/tmp/pattern of=/dev/nbd0 bs=1M seek=5 oflag=direct conv=notrunc 2>/dev/null
  dd if=/dev/nbd0 of=/tmp/readback bs=1M skip=5 count=4 iflag=direct 2>/dev/null
  zt ua.written_sha256 "$(sha256sum </tmp/pattern | cut -d' ' -f1)"
  zt ua.readback_sha256 "$(sha256sum </tmp/readback | cut -d' ' -f1)"
fi
timeout 120 systemctl stop zramd.service
zt ua.stop_rc $?
zt ua.after_stop "$(state zramd.service)"
zt ua.after_stop_result "$(systemctl show -p Result --value zramd.service)"
# The detach is asynchronous in the kernel: polled, for at most 60 s.
for _ in $(seq 600); do [ "$(cat /sys/block/nbd0/size)" = 0 ] && break; sleep 0.1; done
zt ua.nbd0_size_after_stop "$(cat /sys/block/nbd0/size)"
journalctl -u zramd.service --no-pager -o cat 2>/dev/null | sed 's/^/zramd| /'
echo "ZT-END rc=0"
timeout 20 sync
systemctl poweroff -ff 2>/dev/null || echo o >/proc/sysrq-trigger
