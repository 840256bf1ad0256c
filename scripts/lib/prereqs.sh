# Installs, with apt, the Debian packages the project needs when they are missing. Sourced by the scripts.

# apt_ensure PKG...: install whichever of PKG are not installed yet (one apt-get update first).
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq >&2
  # Through env: sudo's env_reset drops a DEBIAN_FRONTEND set in front of sudo itself.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# What the daemon needs at run time: the reference LZ4 and zstd libraries.
RUNTIME_PACKAGES=(liblz4-1 libzstd1)

# What the tests need besides: real NBD clients and servers, and qemu to boot a kernel with the nbd driver.
TEST_PACKAGES=(
  # Real NBD clients and servers for the protocol and daemon tests.
  nbd-client nbdkit libnbd-bin python3-libnbd qemu-utils fio openssl
  # VM tests (scripts/vm/): qemu boots Debian's cloud kernel with an initramfs made of these tools.
  qemu-system-x86 busybox-static cpio e2fsprogs util-linux gcc libc6-dev xz-utils zstd
  # systemd-analyze verify for the units; dpkg-deb builds the package; systemd-nspawn boots a real systemd
  # (as PID 1 of a container over the host's /usr) to run systemd/zramd.service as written. The systemd VM
  # guest (scripts/vm/initramfs.sh --systemd) is made of the files of systemd, udev and kmod (depmod).
  systemd dpkg systemd-container udev kmod
  # kill(1), which the tests run to send SIGTERM and SIGHUP, and zramd.service's ExecReload (the systemd VM guest
  # takes it from here) (in every Debian install but a minimal container image).
  procps
  # nss-systemd (its install adds "systemd" to nsswitch.conf's group line): a test makes a group only NSS knows,
  # as an LDAP or sssd group is, from a userdb drop-in in a mount namespace of its own.
  libnss-systemd
)

# ensure_dotnet_sdk: a .NET 10 SDK on the PATH. Debian 12 does not package one, so when it is missing we add
# Microsoft's package feed for Debian 12 (its packages-microsoft-prod.deb, the documented way) and install
# dotnet-sdk-10.0 from it. Nothing happens when `dotnet --list-sdks` already shows a 10.x SDK.
ensure_dotnet_sdk() {
  if command -v dotnet >/dev/null 2>&1 && dotnet --list-sdks 2>/dev/null | grep -q '^10\.'; then
    return 0
  fi
  local sudo="" deb
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: dotnet-sdk-10.0 (from packages.microsoft.com)" >&2
  apt_ensure ca-certificates wget
  deb=$(mktemp --suffix=.deb)
  wget -q -O "$deb" https://packages.microsoft.com/config/debian/12/packages-microsoft-prod.deb
  $sudo dpkg -i "$deb" >&2
  rm -f "$deb"
  $sudo apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dotnet-sdk-10.0 >&2
}

# ensure_nuget_sources: NuGet.Config lists a local folder source (the machine's offline packages), and restore
# fails with NU1301 when a local source does not exist, as on a fresh machine: create the missing ones, empty.
ensure_nuget_sources() {
  local config sudo="" dir
  config="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/NuGet.Config"
  [ -f "$config" ] || return 0
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  while IFS= read -r dir; do
    [ -d "$dir" ] || $sudo mkdir -p "$dir"
  done < <(sed -n 's/.*<add key="[^"]*" value="\(\/[^"]*\)".*/\1/p' "$config")
}

ensure_runtime_prereqs() { ensure_dotnet_sdk; ensure_nuget_sources; apt_ensure "${RUNTIME_PACKAGES[@]}"; }
ensure_test_prereqs() { ensure_dotnet_sdk; ensure_nuget_sources; apt_ensure "${RUNTIME_PACKAGES[@]}" "${TEST_PACKAGES[@]}"; }
