#!/usr/bin/env bash
# The main job for a newcomer: set up, build (release), and run a small Warren lab in
# network namespaces — VMs, bridges, a router, a DynamicVPN and a StaticVPN to emulated
# peers — ping across, print the topology, VPN and flow statistics, and clean up. As root.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/setup.sh
[ "$(id -u)" = 0 ] || { echo "run.sh: run as root (network namespaces)" >&2; exit 1; }
swift build -c release --product warren-agent
swift build -c release --product warrenctl
exec python3 Scripts/demo.py
