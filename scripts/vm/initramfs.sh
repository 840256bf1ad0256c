#!/usr/bin/env bash
# Builds the VM tests' initramfs (an uncompressed cpio: TCG decompresses slowly) and the host relay.
#   initramfs.sh [--name NAME] [--add SRC=DEST]...
# NAME (default base) names the output $cache/initramfs-NAME.cpio; each --add copies file or folder SRC to
# DEST in the guest, with the shared libraries its ELF files need. Prints KEY=VALUE lines: kernel, modules,
# initrd, relay. Idempotent (the kernel is fetched once; the cpio is rebuilt each time, it takes a second).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${ZRAMD_VM_CACHE:-$root/.cache/vm}
name=base
adds=()
while [ $# -gt 0 ]; do
  case $1 in
    --name) name=$2; shift 2 ;;
    --add) adds+=("$2"); shift 2 ;;
    *) echo "initramfs.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done

kernel=$("$here/kernel.sh")
mkdir -p "$cache/bin"
# build_c OUT SRC [gcc options]: compile when the source is newer than the binary.
build_c() {
  local out=$1 src=$2
  shift 2
  if [ ! -x "$out" ] || [ "$src" -nt "$out" ]; then
    gcc -O2 -Wall -Wextra -Werror "$@" -o "$out.tmp" "$src"
    mv "$out.tmp" "$out"
  fi
}
build_c "$cache/bin/relay" "$here/relay.c"
build_c "$cache/bin/memfill" "$here/guest/memfill.c" -static
build_c "$cache/bin/watch" "$here/guest/watch.c" -static

staging=$(mktemp -d "$cache/initramfs.XXXXXX")
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging"/{bin,sbin,usr/bin,usr/sbin,lib/modules,zt,proc,sys,dev,tmp,mnt,run,etc}

# copy_libs FILE: the shared libraries an ELF file loads, at the same paths (ldd resolves them on the host,
# which runs the same Debian release as the tools).
copy_libs() {
  local lib
  for lib in $(ldd "$1" 2>/dev/null | grep -o '/[^ ]*' || true); do
    [ -e "$staging$lib" ] || { mkdir -p "$staging$(dirname "$lib")"; cp -L "$lib" "$staging$lib"; }
  done
}

cp /bin/busybox "$staging/bin/busybox"
ln -s busybox "$staging/bin/sh"
# The real tools (busybox's own swapon rejects --discard, and its mke2fs cannot make ext4).
for tool in nbd-client mkswap swapon swapoff mke2fs e2fsck fstrim blkdiscard; do
  src=$(PATH=/usr/sbin:/sbin:/usr/bin:/bin command -v "$tool")
  cp -L "$src" "$staging/usr/sbin/$tool"
  copy_libs "$src"
done
cp "$kernel"/modules/*.ko "$kernel/modules/order" "$staging/lib/modules/"
cp "$here/guest/init" "$staging/init"
cp "$here"/guest/*.sh "$staging/zt/"
cp "$cache/bin/memfill" "$cache/bin/watch" "$staging/zt/"
chmod +x "$staging/init" "$staging"/zt/*

for spec in "${adds[@]}"; do
  src=${spec%%=*} dest=${spec#*=}
  mkdir -p "$staging$(dirname "$dest")"
  cp -RL "$src" "$staging$dest"
  while IFS= read -r f; do copy_libs "$f"; done < <(find "$src" -type f -perm -u+x)
  # .NET loads these with dlopen, so ldd of the host does not list them.
  find "$src" -name '*.so' -type f | while IFS= read -r f; do copy_libs "$f"; done
done

out=$cache/initramfs-$name.cpio
(cd "$staging" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$out.tmp"
mv "$out.tmp" "$out"
echo "kernel=$kernel/vmlinuz"
echo "initrd=$out"
echo "relay=$cache/bin/relay"
