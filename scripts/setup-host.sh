#!/usr/bin/env bash
# setup-host.sh — prepare this machine for building and testing the director.
#
# Idempotent; run as root (CI and the dev machines are root).  It:
#   1. installs the Debian packages the build and the namespace testbeds need, but only the
#      missing ones (dpkg-query first; `apt-get update` only if something is missing);
#   2. checks that cargo is on PATH (sourcing ~/.cargo/env if needed);
#   3. checks that network namespaces, veth and bridges can be created;
#   4. tries to provide 2 MiB hugepages (512 of them, 1 GiB) and a hugetlbfs mount at
#      /dev/hugepages.  Hugepages are optional: without them the harness starts the director
#      with `--no-huge -m 512`, so this step reports and never fails.
#
# Exit status: 0 when the host can build and run the tests, 1 otherwise (not root, packages
# could not be installed, no cargo, no netns).
set -euo pipefail

PACKAGES=(dpdk dpdk-dev libdpdk-dev clang libclang-dev pkg-config ethtool iproute2
          iputils-ping netcat-openbsd curl apache2-utils tcpdump python3 valgrind
          fonts-dejavu-core keepalived  # HA test: Debian's keepalived (VRRP)
          nginx openssl           # health-check tests: real web servers, TLS with a test CA
          prometheus tshark systemd)   # observability tests: promtool + a real Prometheus,
                                       # tshark reads dpdk-dumpcap files and decodes IPVS sync, systemd-analyze
HUGEPAGES_WANTED=512          # 2 MiB pages -> 1 GiB: room for a few 256 MiB directors
HUGE_MNT=/dev/hugepages

say()  { printf '[setup-host] %s\n' "$*"; }
warn() { printf '[setup-host] WARNING: %s\n' "$*" >&2; }
die()  { printf '[setup-host] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces, hugepages, apt)"

# --- 1. Debian packages ---------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    say "installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark's package asks whether non-root users may capture: no (tests run as root).
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -q
    # Packages such as nginx must not start system services: the tests run their own
    # instances in namespaces. A policy-rc.d that denies starts is put in place for the
    # install unless the machine already has one.
    own_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
    fi
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    ((own_policy)) && rm -f /usr/sbin/policy-rc.d
    # The tests run their own Prometheus (own config, storage and port); the packaged
    # service, if the install just started it, is not wanted on a test host.
    if [[ " ${missing[*]} " == *" prometheus "* && -d /run/systemd/system ]]; then
        systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
else
    say "packages: all ${#PACKAGES[@]} present"
fi
pkg-config --exists libdpdk || die "pkg-config cannot find libdpdk after installing libdpdk-dev"
say "DPDK $(pkg-config --modversion libdpdk)"

# --- 2. cargo -------------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found (expected in ~/.cargo/bin, installed by rustup)"
say "$(cargo --version)"

# --- 2b. cargo-afl (the fuzz smoke of `make test`, `make fuzz`) ------------------------------
# AFL++ for Rust on the stable toolchain: the cargo-afl binary from crates.io, then its
# bundled AFL++ runtime built once for the current rustc (~/.local/share/afl.rs).
if ! cargo afl --version >/dev/null 2>&1; then
    say "installing cargo-afl (crates.io)"
    cargo install --locked cargo-afl || die "cargo install cargo-afl failed"
fi
if ! ls -d "$HOME"/.local/share/afl.rs/rustc-"$(rustc --version | awk '{print $2}')"-* >/dev/null 2>&1; then
    say "building the AFL++ runtime for $(rustc --version)"
    cargo afl config --build || die "cargo afl config --build failed (AFL++ runtime)"
fi
say "$(cargo afl --version 2>/dev/null | head -1)"

# --- 3. network namespaces, veth, bridge ----------------------------------------------------
probe="lbsetup-probe-$$"
cleanup_probe() { ip netns del "$probe" 2>/dev/null || true; }
trap cleanup_probe EXIT
if ip netns add "$probe" \
   && ip -n "$probe" link add pa type veth peer name pb \
   && ip -n "$probe" link add pbr type bridge; then
    say "network namespaces, veth and bridge: OK"
else
    die "cannot create a network namespace with veth and bridge (need root and CAP_NET_ADMIN)"
fi
cleanup_probe
trap - EXIT

# --- 4. hugepages (best effort) -------------------------------------------------------------
hp_total=$(awk '/^HugePages_Total:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)
if [[ ${hp_total:-0} -lt $HUGEPAGES_WANTED ]]; then
    if echo "$HUGEPAGES_WANTED" > /proc/sys/vm/nr_hugepages 2>/dev/null; then
        say "requested $HUGEPAGES_WANTED hugepages"
    else
        warn "cannot write /proc/sys/vm/nr_hugepages"
    fi
fi
if ! grep -qs ' hugetlbfs ' /proc/mounts; then
    mkdir -p "$HUGE_MNT" 2>/dev/null || true
    mount -t hugetlbfs nodev "$HUGE_MNT" 2>/dev/null || warn "cannot mount hugetlbfs on $HUGE_MNT"
fi
hp_total=$(awk '/^HugePages_Total:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)
hp_free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)
hp_mnt=$(awk '$3 == "hugetlbfs" {print $2; exit}' /proc/mounts)
if [[ ${hp_free:-0} -ge 128 && -n $hp_mnt ]]; then
    say "hugepages: AVAILABLE (total ${hp_total}, free ${hp_free}, hugetlbfs at ${hp_mnt})"
else
    say "hugepages: NOT available (total ${hp_total:-0}, free ${hp_free:-0}, mount '${hp_mnt:-none}'); tests use --no-huge"
fi
say "done"
