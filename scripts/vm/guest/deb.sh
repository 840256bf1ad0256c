# deb: run by guest/systemd.sh under Debian's systemd as PID 1, in an image with dpkg (initramfs.sh --systemd
# --package dpkg ...) and packaging/build-deb.sh's package at /zt/zramd.deb. Installs it, starts zramd with its
# swap and scratch units, and puts swap of the admin's own on a third zramd device (zramd attach, swapon) with a
# process's pages swapped out there. Then: `dpkg -r` must refuse while that swap is on (the swap, the pages and
# the daemon untouched), and while the same device is mounted after swapoff (the file on it intact); after umount
# and detach `dpkg -r` must stop the units and the daemon; `dpkg -P` must
# leave no enablement symlink and no /etc/zramd. Reports each step as ZT lines and powers off.
set -u
zt() { echo "ZT: $1=$2"; }
state() { systemctl show -p ActiveState --value "$1"; }
# status: the package's dpkg status (dpkg-query knows nothing of a purged package).
status() { dpkg-query -W -f='${Status}' zramd 2>/dev/null || echo not-installed; }
# links: the enablement symlinks of zramd's units under /etc/systemd/system.
links() {
  local l
  for l in /etc/systemd/system/*/{zramd.service,zramd-swap.service,zramd-scratch.service,mnt-zram.mount}; do
    [ -L "$l" ] && echo -n "${l#/etc/systemd/system/} "
  done
}
# zramd_pids: processes running zramd, read from /proc.
zramd_pids() {
  local p
  for p in /proc/[0-9]*; do [ "$(cat "$p/comm" 2>/dev/null)" = zramd ] && echo -n "${p#/proc/} "; done
}
# nbd_swaps: the nbd devices in /proc/swaps.
nbd_swaps() { grep -o '^/dev/nbd[0-9]*' /proc/swaps | tr '\n' ' '; }

# An empty dpkg database. The package's Depends are the libraries and packages the image holds (initramfs.sh copied
# them), but this database does not know them: --force-depends.
mkdir -p /var/lib/dpkg/info /var/lib/dpkg/updates /var/lib/dpkg/triggers
touch /var/lib/dpkg/status /var/lib/dpkg/available
DPKG="dpkg --force-depends"

$DPKG -i /zt/zramd.deb >/tmp/dpkg-install.log 2>&1
zt install_rc $?
cat /tmp/dpkg-install.log
cat >/etc/zramd/zramd.conf <<'CONF'
[zram0]
zram-size = 128M
[zram1]
zram-size = 64M
[zram2]
zram-size = 128M
CONF
systemctl enable --now zramd.service zramd-swap.service mnt-zram.mount
zt enable_rc $?
for u in zramd.service zramd-swap.service mnt-zram.mount; do zt "installed.$u" "$(state "$u")"; done
zt installed.links "$(links)"

# The admin's own swap on zramd: zram2 on /dev/nbd2, above zramd-swap's priority so that the fill lands there.
zramd attach zram2 /dev/nbd2 --socket /run/zramd/zramd.sock && /usr/sbin/mkswap /dev/nbd2 >/dev/null &&
  /usr/sbin/swapon --priority 200 /dev/nbd2
zt own_swap_rc $?
# A fill larger than its unit's MemoryMax= that stays swapped out until /tmp/release exists, then checks every page.
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
zt hold.filled "$(grep -o 'swap_used_kib_after_fill=.*' /run/hold.out)"
zt nbd2.used_kib "$(grep '^/dev/nbd2 ' /proc/swaps | tr -s ' \t' ' ' | cut -d' ' -f4)"
pid_before=$(systemctl show -p MainPID --value zramd.service)

# 1. Removal while /dev/nbd2 is swap: refused.
$DPKG -r zramd >/tmp/dpkg-remove1.log 2>&1
zt remove1_rc $?
cat /tmp/dpkg-remove1.log
zt remove1.message "$(grep -m1 '^zramd: ' /tmp/dpkg-remove1.log)"
zt remove1.status "$(status)"
zt remove1.binary "$([ -x /usr/bin/zramd ] && echo present || echo missing)"
zt remove1.swaps "$(nbd_swaps)"
zt remove1.zramd_pid_same "$([ "$(systemctl show -p MainPID --value zramd.service)" = "$pid_before" ] && echo yes || echo no)"
for u in zramd.service zramd-swap.service mnt-zram.mount; do zt "remove1.$u" "$(state "$u")"; done
touch /tmp/release
for _ in $(seq 600); do [ "$(state zt-hold.service)" = active ] || break; sleep 0.5; done
zt hold.result "$(systemctl show -p Result --value zt-hold.service)"
zt hold.bad_pages "$(grep -o 'bad_pages=.*' /run/hold.out | cut -d= -f2)"

# 2. The same device as a filesystem of the admin's own, mounted: refused too, naming the mount; the file on it stays.
/usr/sbin/swapoff /dev/nbd2
zt own_swapoff_rc $?
mkdir -p /tmp/own && /usr/sbin/mkfs.ext4 -q -F /dev/nbd2 && mount /dev/nbd2 /tmp/own &&
  head -c 8M /dev/urandom >/tmp/own/data && sync && md5sum </tmp/own/data >/tmp/own.md5
zt own_mount_rc $?
$DPKG -r zramd >/tmp/dpkg-remove-mounted.log 2>&1
zt remove_mounted_rc $?
cat /tmp/dpkg-remove-mounted.log
zt remove_mounted.message "$(grep -m1 '^zramd: ' /tmp/dpkg-remove-mounted.log)"
zt remove_mounted.status "$(status)"
zt remove_mounted.zramd_pid_same "$([ "$(systemctl show -p MainPID --value zramd.service)" = "$pid_before" ] && echo yes || echo no)"
# Read back from the device, not the page cache: the daemon must still hold what was written.
sync && echo 3 >/proc/sys/vm/drop_caches
zt remove_mounted.data_same "$(md5sum </tmp/own/data | cmp -s - /tmp/own.md5 && echo yes || echo no)"

# 3. After umount and detach: removed, units stopped, daemon gone; enablement stays until purge.
umount /tmp/own && zramd detach /dev/nbd2
zt own_detach_rc $?
$DPKG -r zramd >/tmp/dpkg-remove2.log 2>&1
zt remove2_rc $?
cat /tmp/dpkg-remove2.log
zt remove2.status "$(status)"
for u in zramd.service zramd-swap.service zramd-scratch.service mnt-zram.mount; do zt "remove2.$u" "$(state "$u")"; done
zt remove2.zramd_pids "$(zramd_pids)"
zt remove2.swaps "$(nbd_swaps)"
zt remove2.scratch_mount "$(grep ' /mnt/zram ' /proc/mounts)"
zt remove2.links "$(links)"

# 4. Purge: no enablement left, no configuration.
$DPKG -P zramd >/tmp/dpkg-purge.log 2>&1
zt purge_rc $?
cat /tmp/dpkg-purge.log
zt purge.status "$(status)"
zt purge.links "$(links)"
zt purge.etc "$([ -e /etc/zramd ] && echo "present: $(ls -A /etc/zramd | tr '\n' ' ')" || echo absent)"
zt purge.var_lib "$([ -e /var/lib/zramd ] && echo present || echo absent)"
zt systemd.failed "$(systemctl list-units --failed --plain --no-legend | cut -d' ' -f1 | tr '\n' ' ')"
echo "ZT-END rc=0"
systemctl --no-block poweroff 2>/dev/null
