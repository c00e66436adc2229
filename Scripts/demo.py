#!/usr/bin/env python3
"""The README's main job: a small Warren lab, end to end, then clean up.

Starts warren-agent (release build) on a fresh state directory and builds, through the
JSON-RPC API and warrenctl:
- VMs vm1, vm2 on bridge b1 (100.64.1.0/24) and vm3 on bridge b2 (100.64.2.0/24),
  joined by router r1;
- a DynamicVPN from r1 to the lab's AWS-side peer (two tunnels, BGP) and a StaticVPN to
  its CloudStack-style policy peer (Scripts/lab);
pings across the bridge, through the router, through both VPNs, prints the topology,
the VPN status and the flow statistics, and removes everything on exit (Ctrl-C too).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WARREN_BUILD_DIR", str(ROOT / ".build" / "release"))
sys.path.insert(0, str(ROOT / "Tests" / "e2e"))
from vpn_support import VPNLab, lab_config, tunnels, wait_tunnels  # noqa: E402
from warren_e2e import BUILD, Hosts, wait_until  # noqa: E402

LAB = lab_config(ike_version=2, hold=30, keepalive=10, policy_peers=[
    {"name": "cs", "remote_subnets": ["100.64.1.0/24"], "ike_version": "ikev2",
     "ike_policy": "aes128-sha1;modp1536", "esp_policy": "aes128-sha1;modp1536", "customer_outside_ip": "203.0.113.20"}])
LAB["prefix"] = "wrun"


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def ctl(agent, *args: str) -> None:
    env = dict(os.environ, WARREN_SOCKET=agent.socket_path)
    subprocess.run([str(BUILD / "warrenctl"), *args], env=env, check=False)


def ping(vm, target: str, what: str) -> bool:
    got = vm.ping(target, count=3, interval=0.2)
    print(f"  {vm.ns} -> {target:15} {what:32} {got}/3 replies")
    return got == 3


def main() -> int:
    hosts = Hosts()
    v = VPNLab(LAB)
    ok = True
    try:
        say("starting the VPN peers (lab) and warren-agent")
        v.up()
        a = v.agent
        print(f"  agent state directory {a.state_dir}, socket {a.socket_path}")
        say("building the virtual topology through the API")
        vm1 = v.tenant(hosts, "vm1", "100.64.1.10/24")
        vm2 = hosts.vm("vm2", "100.64.1.11/24", "100.64.1.1")
        a.call("port.create", device="b1", name="vm2p")
        a.call("port.bind", port="vm2p", interface=vm2.host_if)
        a.call("bridge.create", name="b2")
        a.call("port.create", device="r1", name="r1-b2", address="100.64.2.1/24")
        a.call("port.create", device="b2", name="b2-r1")
        a.call("port.link", port="b2-r1", peer="r1-b2")
        vm3 = hosts.vm("vm3", "100.64.2.10/24", "100.64.2.1")
        a.call("port.create", device="b2", name="vm3p")
        a.call("port.bind", port="vm3p", interface=vm3.host_if)
        say("pinging across the virtual network")
        ok &= ping(vm1, "100.64.1.11", "same bridge")
        ok &= ping(vm1, "100.64.1.1", "the router")
        ok &= ping(vm1, "100.64.2.10", "through the router")
        say("creating a DynamicVPN (AWS-style, two tunnels + BGP) and a StaticVPN (policy-based)")
        t0 = time.monotonic()
        a.call("vpn.dynamic.create", v.dynamic_spec("aws1", localSubnets=["100.64.1.0/24", "100.64.2.0/24"]))
        a.call("vpn.static.create", v.static_spec("cs", "cs1"))
        wait_tunnels(a, "aws1", {"A": "up", "B": "up"}, timeout=60)
        wait_until(lambda: a.call("vpn.static.status", id="cs1")["items"][0]["state"] == "up", timeout=60, what="static VPN up")
        print(f"  both VPNs up in {time.monotonic() - t0:.1f} s")
        ok &= ping(vm1, "100.64.200.10", "VPC host via DynamicVPN")
        ok &= ping(vm3, "100.64.200.10", "VPC host via DynamicVPN")
        ok &= ping(vm1, "100.64.210.10", "policy peer subnet 1")
        ok &= ping(vm1, "100.64.211.10", "policy peer subnet 2")
        say("warrenctl topology")
        ctl(a, "topology")
        say("warrenctl trace vm1p --ip-src 100.64.1.10 --ip-dst 100.64.200.10 --proto tcp --dst-port 443")
        ctl(a, "trace", "vm1p", "--ip-src", "100.64.1.10", "--ip-dst", "100.64.200.10", "--proto", "tcp", "--dst-port", "443")
        say("warrenctl vpn dynamic status aws1 (per tunnel)")
        for t in tunnels(a, "aws1").values():
            print(f"  tunnel {t['tunnel']}: {t['state']:22} IKE {t['ikeState']}, CHILD {t['childState']}, BGP {t['bgpState']}, "
                  f"{t['prefixesReceived']} prefix(es) in, {t['routesInjected']} route(s) injected, active={t['active']}")
        say("warrenctl flow stats")
        ctl(a, "flow", "stats")
        say("result: " + ("everything answered" if ok else "SOME PINGS FAILED"))
        return 0 if ok else 1
    finally:
        say("cleaning up (VPNs, agent, lab, VM namespaces)")
        try:
            v.down()
        finally:
            hosts.cleanup()


if __name__ == "__main__":
    sys.exit(main())
