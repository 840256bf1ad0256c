# swap: mkswap and swapon --discard on the NBD device, then fill more memory than the guest has (ZT_FILL_MIB,
# default 384 in a 256 MiB guest) with per-page content and verify every page; report swap use; swapoff.
. /zt/lib.sh
# Swap over NBD over TCP: the guest's own network stack must keep working when its memory is full, so it gets
# a reserve, as for any swap over the network (ZT_MIN_FREE_KIB, default 16 MiB; 0 keeps the kernel's, about
# 1.2 MiB here). With the kernel's the fill took it all about one run in fifteen: the guest's TCP held 216 KiB of
# writes it could no longer send or see acknowledged (tx_queue in /proc/net/tcp, retransmits backing off), memory
# pressure "full" at 99%, while zramd, the relay and qemu's slirp sat idle with every byte they had been sent answered.
zt swap.default_min_free_kbytes "$(cat /proc/sys/vm/min_free_kbytes)"
[ "${ZT_MIN_FREE_KIB:-16384}" = 0 ] || echo "${ZT_MIN_FREE_KIB:-16384}" >/proc/sys/vm/min_free_kbytes
nbd_up /dev/nbd0 -swap
/usr/sbin/mkswap /dev/nbd0 >/dev/null
/usr/sbin/swapon --discard /dev/nbd0
zt swap.mem_total_kib "$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
/zt/memfill "${ZT_FILL_MIB:-384}" &
fill=$!
# ZT_WATCH=SECONDS: the fill's kernel stacks, meminfo, the NBD device's requests in flight and the TCP queues
# every SECONDS, so that a stall shows whether the guest waits on zramd or on itself.
watcher=
if [ -n "${ZT_WATCH:-}" ]; then
  /zt/watch "$fill" "$ZT_WATCH" /sys/block/nbd0/inflight /proc/net/tcp &
  watcher=$!
fi
wait "$fill" && rc=0 || rc=$?
[ -z "$watcher" ] || kill "$watcher"
zt swap.memfill_rc "$rc"
# /proc/swaps: Filename Type Size Used Priority; "Used" after the fill program has exited.
zt swap.proc_swaps_line "$(awk '$1 == "/dev/nbd0" { print $1 "," $3 "," $4 }' /proc/swaps)"
/usr/sbin/swapoff /dev/nbd0 && rc=0 || rc=$?
zt swap.swapoff_rc "$rc"
nbd_down /dev/nbd0
