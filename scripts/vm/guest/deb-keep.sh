# deb-keep: run by guest/systemd.sh under Debian's systemd as PID 1, in an image with dpkg and two builds of
# zramd's package: /zt/zramd.deb (packaging/build-deb.sh's) and /zt/zramd-next.deb (the same with a higher
# Version). Installs the first, enables zramd, zramd-swap and mnt-zram.mount, edits /etc/zramd/zramd.conf, writes a
# file to the scratch disk, and puts a process's pages out to zramd-swap's swap. Then:
# 1. Upgrade (dpkg -i zramd-next.deb): nothing may restart; the swap, its pages, the file and the edited config stay.
# 2. Swap of the admin's own on /dev/nbd2 (zram2), then `dpkg -r zramd`: refused; what the units hold must stay too.
# Reports each step as ZT lines and powers off.
set -u
zt() { echo "ZT: $1=$2"; }
state() { systemctl show -p ActiveState --value "$1"; }
status() { dpkg-query -W -f='${Status} ${Version}' zramd 2>/dev/null || echo not-installed; }
nbd_swaps() { grep -o '^/dev/nbd[0-9]*' /proc/swaps | tr '\n' ' '; }
main_pid() { systemctl show -p MainPID --value zramd.service; }
# scratch_same: the file on /mnt/zram, read from the device (not the page cache), is what was written.
scratch_same() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
  if [ -f /mnt/zram/keep ] && [ "$(md5sum </mnt/zram/keep)" = "$(cat /tmp/keep.md5)" ]; then echo yes; else echo no; fi
}

mkdir -p /var/lib/dpkg/info /var/lib/dpkg/updates /var/lib/dpkg/triggers
touch /var/lib/dpkg/status /var/lib/dpkg/available
DPKG="dpkg --force-depends --force-confold"

$DPKG -i /zt/zramd.deb >/tmp/dpkg-install.log 2>&1
zt install_rc $?
cat /tmp/dpkg-install.log
cat >/etc/zramd/zramd.conf <<'CONF'
# edited by the admin
[zram0]
zram-size = 128M
[zram1]
zram-size = 64M
[zram2]
zram-size = 64M
CONF
md5sum </etc/zramd/zramd.conf >/tmp/conf.md5
systemctl enable --now zramd.service zramd-swap.service mnt-zram.mount
zt enable_rc $?
for u in zramd.service zramd-swap.service mnt-zram.mount; do zt "installed.$u" "$(state "$u")"; done
head -c 8M /dev/urandom >/tmp/keep && cp /tmp/keep /mnt/zram/keep && md5sum </tmp/keep >/tmp/keep.md5
zt scratch_write_rc $?

# A process whose pages are out on zramd-swap's /dev/nbd0, held there until /tmp/release exists.
cat >/run/systemd/system/zt-hold.service <<UNIT
[Service]
Type=exec
Environment=MEMFILL_HOLD=/tmp/release
ExecStart=/zt/memfill ${ZT_FILL_MIB:-64} 1024
MemoryMax=${ZT_FILL_LIMIT_MIB:-24}M
StandardOutput=file:/run/hold.out
UNIT
systemctl daemon-reload
systemctl start zt-hold.service
for _ in $(seq 600); do grep -q swap_used_kib_after_fill /run/hold.out 2>/dev/null && break; sleep 0.5; done
zt nbd0.used_kib "$(grep '^/dev/nbd0 ' /proc/swaps | tr -s ' \t' ' ' | cut -d' ' -f4)"
pid_before=$(main_pid)

# 1. Upgrade.
$DPKG -i /zt/zramd-next.deb >/tmp/dpkg-upgrade.log 2>&1
zt upgrade_rc $?
cat /tmp/dpkg-upgrade.log
zt upgrade.status "$(status)"
zt upgrade.zramd_pid_same "$([ "$(main_pid)" = "$pid_before" ] && echo yes || echo no)"
for u in zramd.service zramd-swap.service mnt-zram.mount; do zt "upgrade.$u" "$(state "$u")"; done
zt upgrade.swaps "$(nbd_swaps)"
zt upgrade.nbd0_used_kib "$(grep '^/dev/nbd0 ' /proc/swaps | tr -s ' \t' ' ' | cut -d' ' -f4)"
zt upgrade.scratch_same "$(scratch_same)"
zt upgrade.conf_same "$([ "$(md5sum </etc/zramd/zramd.conf)" = "$(cat /tmp/conf.md5)" ] && echo yes || echo no)"
touch /tmp/release
for _ in $(seq 600); do [ "$(state zt-hold.service)" = active ] || break; sleep 0.5; done
zt hold.result "$(systemctl show -p Result --value zt-hold.service)"
zt hold.bad_pages "$(grep -o 'bad_pages=.*' /run/hold.out | cut -d= -f2)"

# 2. Removal refused because of the admin's own swap on /dev/nbd2.
zramd attach zram2 /dev/nbd2 --socket /run/zramd/zramd.sock && /usr/sbin/mkswap /dev/nbd2 >/dev/null &&
  /usr/sbin/swapon --priority 5 /dev/nbd2
zt own_swap_rc $?
$DPKG -r zramd >/tmp/dpkg-remove.log 2>&1
zt remove_rc $?
cat /tmp/dpkg-remove.log
zt remove.message "$(grep -m1 '^zramd: ' /tmp/dpkg-remove.log)"
zt remove.status "$(status)"
zt remove.zramd_pid_same "$([ "$(main_pid)" = "$pid_before" ] && echo yes || echo no)"
for u in zramd.service zramd-swap.service mnt-zram.mount; do zt "remove.$u" "$(state "$u")"; done
zt remove.swaps "$(nbd_swaps)"
zt remove.scratch_same "$(scratch_same)"
zt remove.scratch_files "$(ls /mnt/zram 2>&1 | tr '\n' ' ')"

zt systemd.failed "$(systemctl list-units --failed --plain --no-legend | cut -d' ' -f1 | tr '\n' ' ')"
echo "ZT-END rc=0"
timeout 20 sync
systemctl poweroff -ff 2>/dev/null || echo o >/proc/sysrq-trigger
