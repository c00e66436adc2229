#!/usr/bin/env bash
# Installs what Warren needs to build, run and test on Debian 12 (idempotent).
# Used by Scripts/run.sh and Scripts/test.sh; run as root.
set -euo pipefail
PKGS=(
  pkg-config libnl-3-dev libnl-route-3-dev libssl-dev libsqlite3-dev
  strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins
  bird2 nftables iproute2 iputils-ping tcpdump iperf3 ethtool traceroute procps python3
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian starts packaged daemons when it can; Warren runs its own charon/BIRD per namespace.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
command -v swift >/dev/null || { echo "setup: swift (6.x) is not on PATH" >&2; exit 1; }
python3 -c "import pytest" 2>/dev/null || python3 -m pip install -q pytest
# Debian ships these daemons enabled; Warren runs its own per namespace, never the system ones.
for unit in strongswan-starter strongswan bird; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$unit" 2>/dev/null; then systemctl stop "$unit" || true; fi
done
