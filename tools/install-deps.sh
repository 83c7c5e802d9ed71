#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian 12 packages mipsec needs to build, test and run its lab, if missing.
# Idempotent: does nothing (not even apt-get update) when everything is present.
set -euo pipefail

packages=(
  # build
  cmake ninja-build pkg-config g++ clang libclang-rt-14-dev
  libboost1.81-dev libssl-dev libsodium-dev libcli11-dev nlohmann-json3-dev doctest-dev
  # the home agent's binding store (state_file): SQLite in WAL mode
  libsqlite3-dev
  # Debian package (cpack -G DEB: dpkg-shlibdeps computes Depends, file finds the ELF
  # files, strip) and its test (man, systemd-analyze verify for the unit)
  dpkg-dev file binutils man-db systemd
  # lab and end-to-end tests
  iproute2 nftables conntrack iputils-ping dnsmasq-base busybox procps
  # independent checkers
  tshark python3 python3-scapy python3-cryptography python3-prometheus-client
  # `mipsec lab` reports: the topology picture (dot) and the timeline plot
  graphviz python3-matplotlib
  # interop peer: strongSwan 5.9 with kernel-libipsec (no kernel IPsec needed)
  strongswan-charon strongswan-swanctl strongswan-libcharon libcharon-extra-plugins
  libstrongswan-standard-plugins libstrongswan-extra-plugins
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages: ${missing[*]}; run as root (or install them) and try again" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # wireshark-common asks whether non-root users may capture; the answer does not matter here.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
