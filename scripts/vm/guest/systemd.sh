# systemd: run by zt-check.service under Debian's systemd as PID 1 once multi-user.target is reached, with
# zramd.service, zramd-swap.service and mnt-zram.mount from systemd/ enabled. Reports the units' states, the
# swap on /dev/nbd0 (and a fill that needs it) and the scratch disk on /dev/nbd1 (a file written, dropped from
# the cache, read back), then
# `systemctl poweroff`: the shutdown's order is on the console (journald forwards to it), for the host test.
set -u
zt() { echo "ZT: $1=$2"; }
# The NAME=VALUE pairs of the kernel command line (systemd keeps them from its services).
for a in $(cat /proc/cmdline); do case $a in ZT_*=*) export "${a?}" ;; esac; done
# zt-check.service starts this script in every systemd image: another test of such an image (deb.sh) runs instead.
[ "${ZT_TEST:-systemd}" = systemd ] || exec /bin/bash "/zt/$ZT_TEST.sh"
zt systemd.uptime "$(cut -d' ' -f1 /proc/uptime)"
zt systemd.pid1 "$(cat /proc/1/comm)"
for u in zramd.service zramd-swap.service zramd-scratch.service mnt-zram.mount; do
  for p in ActiveState SubState Result; do zt "$u.$p" "$(systemctl show -p "$p" --value "$u")"; done
done
# zramd refreshes STATUS= every 5 s: the attachments just made may not be in it yet; give it up to 60 s to name both
# (the guest is emulated, and on a loaded host a 5 s timer can fire late).
for _ in $(seq 120); do
  status=$(systemctl show -p StatusText --value zramd.service)
  case $status in *", 1 client; zram1: "*", 1 client") break ;; esac
  sleep 0.5
done
zt zramd.StatusText "$status"
zt zramd.NRestarts "$(systemctl show -p NRestarts --value zramd.service)"
zt systemd.failed "$(systemctl list-units --failed --plain --no-legend | cut -d' ' -f1 | tr '\n' ' ')"
zt swaps "$(tail -n +2 /proc/swaps | tr -s ' \t' ' ' | tr '\n' ';')"
zt swapon_show "$(swapon --show=NAME,TYPE,PRIO --noheadings | tr -s ' ' | tr '\n' ';')"
zt scratch.mount "$(grep ' /mnt/zram ' /proc/mounts)"
# Swap in use: a fill larger than its unit's MemoryMax=, every page verified. (A unit file and systemctl:
# systemd-run needs D-Bus, which the image lacks.)
cat >/run/systemd/system/zt-fill.service <<UNIT
[Service]
Type=oneshot
ExecStart=/zt/memfill ${ZT_FILL_MIB:-64} 1024
MemoryMax=${ZT_FILL_LIMIT_MIB:-24}M
StandardOutput=tty
TTYPath=/dev/ttyS0
UNIT
systemctl daemon-reload
systemctl start zt-fill.service
zt memfill_rc $?
# systemctl reload (ExecReload: SIGHUP) with swap on and the mount in place: zramd reads its configuration again
# and logs it, in the same process; the scratch disk's file is written and read back after it.
mainpid=$(systemctl show -p MainPID --value zramd.service)
systemctl reload zramd.service
zt reload_rc $?
for _ in $(seq 120); do
  journalctl -u zramd.service -o cat --no-pager | grep -q 'SIGHUP: configuration read again' && break
  sleep 0.5
done
zt reload.line "$(journalctl -u zramd.service -o cat --no-pager | grep 'SIGHUP: configuration read again' | tail -1)"
zt reload.same_pid "$([ "$(systemctl show -p MainPID --value zramd.service)" = "$mainpid" ] && echo yes || echo no)"
zt reload.ActiveState "$(systemctl show -p ActiveState --value zramd.service)"
zt nbd0.size "$(cat /sys/block/nbd0/size)"
zt nbd1.size "$(cat /sys/block/nbd1/size)"
if dd if=/dev/urandom of=/tmp/pattern bs=1M count=8 2>/dev/null && cp /tmp/pattern /mnt/zram/pattern && sync; then
  echo 3 >/proc/sys/vm/drop_caches
  zt scratch.written_sha256 "$(sha256sum </tmp/pattern | cut -d' ' -f1)"
  zt scratch.readback_sha256 "$(sha256sum </mnt/zram/pattern | cut -d' ' -f1)"
fi
zt systemd.uptime_end "$(cut -d' ' -f1 /proc/uptime)"
echo "ZT-END rc=0"
systemctl --no-block poweroff 2>/dev/null
