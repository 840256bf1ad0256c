#!/usr/bin/env bash
# Builds the VM tests' initramfs (an uncompressed cpio: TCG decompresses slowly) and the host relay.
#   initramfs.sh [--name NAME] [--systemd] [--add SRC=DEST]... [--enable UNIT]... [--package PKG]...
# NAME (default base) names the output $cache/initramfs-NAME.cpio; each --add copies file or folder SRC to
# DEST in the guest, with the shared libraries its ELF files need. Prints KEY=VALUE lines: kernel, modules,
# initrd, relay. Idempotent (the kernel is fetched once; the cpio is rebuilt each time, it takes a second).
# --systemd: the guest boots the host's Debian systemd as PID 1 (/init is /usr/lib/systemd/systemd) from a
# merged-/usr tree of the files of SYSTEMD_PACKAGES, the modules where modprobe finds them (depmod), and the
# guest's zt-check.service, which runs guest/systemd.sh once multi-user.target is reached. Each --enable is
# `systemctl --root enable UNIT` in that tree, after the additions: the units' own [Install] sections. Each
# --package adds that Debian package's files to the --systemd tree too (e.g. dpkg, to install zramd's package).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${ZRAMD_VM_CACHE:-$root/.cache/vm}
name=base
adds=()
systemd=
enables=()
packages=()
while [ $# -gt 0 ]; do
  case $1 in
    --name) name=$2; shift 2 ;;
    --systemd) systemd=1; shift ;;
    --add) adds+=("$2"); shift 2 ;;
    --enable) enables+=("$2"); shift 2 ;;
    --package) packages+=("$2"); shift 2 ;;
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
    gcc -O2 -Wall -Wextra -Werror "$@" -o "$out.tmp.$$" "$src"
    mv "$out.tmp.$$" "$out"
  fi
}
build_c "$cache/bin/relay" "$here/relay.c"
build_c "$cache/bin/memfill" "$here/guest/memfill.c" -static
build_c "$cache/bin/watch" "$here/guest/watch.c" -static

staging=$(mktemp -d "$cache/initramfs.XXXXXX")
trap 'rm -rf "$staging"' EXIT
if [ -n "$systemd" ]; then
  # Debian 12's merged /usr, so that systemd finds its units and the packages' /bin and /lib paths land in /usr.
  mkdir -p "$staging"/usr/{bin,sbin,lib,lib64}
  for d in bin sbin lib lib64; do ln -s "usr/$d" "$staging/$d"; done
fi
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
if [ -z "$systemd" ]; then
  cp "$kernel"/modules/*.ko "$kernel/modules/order" "$staging/lib/modules/"
  cp "$here/guest/init" "$staging/init"
fi
cp "$here"/guest/*.sh "$staging/zt/"
cp "$cache/bin/memfill" "$cache/bin/watch" "$staging/zt/"
chmod +x "$staging"/zt/*
[ -n "$systemd" ] || chmod +x "$staging/init"

for spec in "${adds[@]}"; do
  src=${spec%%=*} dest=${spec#*=}
  mkdir -p "$staging$(dirname "$dest")"
  cp -RL "$src" "$staging$dest"
  while IFS= read -r f; do copy_libs "$f"; done < <(find "$src" -type f -perm -u+x)
  # .NET loads these with dlopen, so ldd of the host does not list them.
  find "$src" -name '*.so' -type f | while IFS= read -r f; do copy_libs "$f"; done
done

if [ -n "$systemd" ]; then
  # What systemd as PID 1 needs (udev makes nbd devices ready for device and mount units; kmod's libkmod loads
  # modules), what the units run (procps: /bin/kill for zramd.service's ExecReload) and what guest/systemd.sh uses. No documentation, no hardware database.
  SYSTEMD_PACKAGES=(systemd libsystemd-shared udev kmod util-linux mount e2fsprogs coreutils bash grep sed procps)
  for pkg in "${SYSTEMD_PACKAGES[@]}" "${packages[@]}"; do
    while IFS= read -r f; do
      case $f in /usr/share/doc/* | /usr/share/man/* | /usr/share/locale/* | /usr/share/bash-completion/* | \
        /usr/share/zsh/* | /usr/share/lintian/* | /usr/lib/udev/hwdb.d/* | /usr/share/info/*) continue ;; esac
      [ -d "$f" ] && continue
      [ -e "$f" ] || [ -L "$f" ] || continue
      mkdir -p "$staging$(dirname "$f")"
      cp -a "$f" "$staging$f"
      [ -f "$f" ] && [ ! -L "$f" ] && { [ -x "$f" ] || [[ $f == *.so* ]]; } && copy_libs "$f"
    done < <(dpkg -L "$pkg")
  done
  cp /usr/lib/os-release "$staging/usr/lib/os-release"
  ln -sf ../usr/lib/os-release "$staging/etc/os-release"
  # A machine id, so that this is not a first boot (systemd-firstboot would prompt on the console).
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$staging/etc/machine-id"
  echo >>"$staging/etc/machine-id"
  # The modules where modprobe and systemd-modules-load look for them.
  version=$(basename "$kernel")
  version=${version#linux-image-}
  mkdir -p "$staging/usr/lib/modules/$version/extra"
  cp "$kernel"/modules/*.ko "$staging/usr/lib/modules/$version/extra/"
  depmod -b "$staging" "$version"
  ln -s usr/lib/systemd/systemd "$staging/init"
  mkdir -p "$staging/etc/systemd/system"
  cp "$here/guest/zt-check.service" "$staging/etc/systemd/system/"
  enables+=(zt-check.service)
  # No logins: no getty on the console the test reads, no logind (it needs D-Bus, which the image lacks).
  SYSTEMCTL_SKIP_REDIRECT=1 systemctl --root="$staging" --quiet mask serial-getty@ttyS0.service getty.target systemd-logind.service
  SYSTEMCTL_SKIP_REDIRECT=1 systemctl --root="$staging" --quiet enable "${enables[@]}"
fi

out=$cache/initramfs-$name.cpio
# Written under a name of this process's own and renamed: two builds of the same image at once (two test runs
# from one checkout) each leave a whole file, and a guest booting meanwhile reads the old one or the new.
(cd "$staging" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$out.tmp.$$"
mv "$out.tmp.$$" "$out"
echo "kernel=$kernel/vmlinuz"
echo "initrd=$out"
echo "relay=$cache/bin/relay"
