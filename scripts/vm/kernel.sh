#!/usr/bin/env bash
# Fetches Debian's cloud kernel for the VM tests without installing it on the host: `apt-get download` of the
# image package that linux-image-cloud-amd64 depends on, `dpkg -x` into the cache, then vmlinuz and the
# modules the guest loads (nbd, virtio_net and everything they depend on), decompressed.
# Idempotent. Prints the folder it filled: vmlinuz, modules/NAME.ko, modules/order (insmod order).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${ZRAMD_VM_CACHE:-$root/.cache/vm}
WANTED=(virtio_pci virtio_net nbd)

image_package() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }'
}
pkg=$(image_package)
if [ -z "$pkg" ]; then
  # Updating the package lists needs root: sudo when run as a user (test.sh installs with sudo too).
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq >&2; else sudo apt-get update -qq >&2; fi
  pkg=$(image_package)
fi
[ -n "$pkg" ] || { echo "kernel.sh: apt knows no linux-image-cloud-amd64" >&2; exit 1; }

out=$cache/kernel/$pkg
if [ -s "$out/modules/order" ] && [ -s "$out/vmlinuz" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/kernel.XXXXXX" 2>/dev/null || { mkdir -p "$cache" && mktemp -d "$cache/kernel.XXXXXX"; })
trap 'rm -rf "$work"' EXIT
# As root (a root-owned folder) apt notes that it could not drop to _apt: expected. As a user it needs no root.
(cd "$work" && apt-get download -q "$pkg" 2>&1 | grep -v 'unsandboxed' >&2 || true)
deb=$(ls "$work"/"$pkg"_*.deb)
dpkg -x "$deb" "$work/x"
moddir=$(ls -d "$work"/x/lib/modules/*)
mkdir -p "$work/out/modules"
cp "$work"/x/boot/vmlinuz-* "$work/out/vmlinuz"

# find_module NAME: the module file, with either separator and any compression.
find_module() {
  local n=$1 alt=${1//_/-}
  find "$moddir" \( -name "$n.ko*" -o -name "$alt.ko*" \) -print -quit
}
# add_module NAME: copy NAME decompressed, after the modules it depends on (their order is the insmod order).
declare -A added=()
add_module() {
  local name=$1 file deps dep
  [ -n "${added[$name]:-}" ] && return 0
  added[$name]=1
  file=$(find_module "$name")
  [ -n "$file" ] || { echo "kernel.sh: module $name not in $pkg" >&2; exit 1; }
  case $file in
    *.ko.xz) xz -dc "$file" >"$work/out/modules/$name.ko" ;;
    *.ko.zst) zstd -qdc "$file" >"$work/out/modules/$name.ko" ;;
    *.ko.gz) gzip -dc "$file" >"$work/out/modules/$name.ko" ;;
    *) cp "$file" "$work/out/modules/$name.ko" ;;
  esac
  deps=$(tr '\0' '\n' <"$work/out/modules/$name.ko" | sed -n 's/^depends=//p' | head -n 1)
  for dep in ${deps//,/ }; do add_module "$dep"; done
  echo "$name" >>"$work/out/modules/order.tmp"
}
# Dependencies are appended before their dependents only if visited first, so order by a second pass.
for m in "${WANTED[@]}"; do add_module "$m"; done
order() {
  local name=$1 deps dep
  [ -n "${placed[$name]:-}" ] && return 0
  deps=$(tr '\0' '\n' <"$work/out/modules/$name.ko" | sed -n 's/^depends=//p' | head -n 1)
  for dep in ${deps//,/ }; do order "$dep"; done
  placed[$name]=1
  echo "$name" >>"$work/out/modules/order"
}
declare -A placed=()
while read -r m; do order "$m"; done <"$work/out/modules/order.tmp"
rm "$work/out/modules/order.tmp"

mkdir -p "$(dirname "$out")"
rm -rf "$out"
mv "$work/out" "$out"
echo "$out"
