#!/usr/bin/env bash
# Boots the VM tests' kernel under qemu's software emulation and runs one guest test; the guest console
# (kernel messages and the test's "ZT: key=value" lines, ending with "ZT-END rc=N") goes to stdout.
#   run.sh [-i INITRD] [-m MEM] [-t SECONDS] [-s SOCKET] TEST [NAME=VALUE]...
# SOCKET: zramd's Unix socket; the guest reaches it at 10.0.2.100:10809 through qemu's guestfwd and the relay.
# NAME=VALUE pairs go on the kernel command line, so they reach the guest's /init as environment variables.
# qemu runs under `timeout`, and the kernel panics into a power-off, so a failure never hangs the caller.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${ZRAMD_VM_CACHE:-$root/.cache/vm}
initrd=$cache/initramfs-base.cpio
mem=256M
seconds=150
socket=
while getopts 'i:m:t:s:' opt; do
  case $opt in
    i) initrd=$OPTARG ;;
    m) mem=$OPTARG ;;
    t) seconds=$OPTARG ;;
    s) socket=$OPTARG ;;
    *) exit 64 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: run.sh [-i INITRD] [-m MEM] [-t SECONDS] [-s SOCKET] TEST [NAME=VALUE]..." >&2; exit 64; }
test=$1
shift
kernel=$("$here/kernel.sh")/vmlinuz
[ -s "$initrd" ] || { echo "run.sh: no initramfs at $initrd (run initramfs.sh)" >&2; exit 66; }

# restrict=on: the guest reaches nothing but the forwarded address.
netdev="user,id=n0,restrict=on"
[ -n "$socket" ] && netdev+=",guestfwd=tcp:10.0.2.100:10809-cmd:$cache/bin/relay $socket"
append="console=ttyS0 panic=-1 loglevel=4 ZT_TEST=$test $*"

exec timeout --kill-after=10 "$seconds" qemu-system-x86_64 \
  -accel tcg -smp 1 -m "$mem" -nographic -no-reboot -nodefaults -serial stdio \
  -kernel "$kernel" -initrd "$initrd" -append "$append" \
  -netdev "$netdev" -device virtio-net-pci,netdev=n0
