"""Shared pieces of the VPN end-to-end tests: the lab (AWS-side and policy peers from
Scripts/lab), an agent whose uplink is the lab's, a tenant router with one VM, the
create parameters built from the lab's description, and waiting helpers.

Lab prefix "wev" (namespaces wev-*, uplink wev-up); VM namespaces come from the harness
(we-<name>). The lab is torn down even when a test fails.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from warren_e2e import ROOT, Agent, Hosts, RPCError, run, wait_until

sys.path.insert(0, str(ROOT / "Scripts" / "lab"))
from warrenlab.config import LabConfig  # noqa: E402
from warrenlab.lab import Lab  # noqa: E402

LAB_PREFIX = "wev"
UPLINK = f"{LAB_PREFIX}-up"


def lab_config(ike_version: int = 2, hold: int = 3, keepalive: int = 1, policy_peers: list | None = None,
               aws: bool = True) -> dict:
    cfg: dict = {"prefix": LAB_PREFIX, "policy_peers": policy_peers or []}
    if aws:
        cfg["aws"] = {
            "ike_version": ike_version, "hold_time": hold, "keepalive_time": keepalive, "customer_asn": 65000,
            "tunnels": [
                {"name": "A", "outside_ip": "198.51.100.10", "inside_cidr": "169.254.10.0/30", "med": 100,
                 "vpc_lan_ip": "100.64.200.2", "customer_outside_ip": "203.0.113.10"},
                {"name": "B", "outside_ip": "198.51.100.11", "inside_cidr": "169.254.11.0/30", "med": 200,
                 "vpc_lan_ip": "100.64.200.3", "customer_outside_ip": "203.0.113.11"},
            ]}
    else:
        cfg["aws"] = None
    return cfg


class VPNLab:
    """The peers (lab) plus a fresh agent using the lab's uplink."""

    def __init__(self, cfg: dict):
        self.lab = Lab(LabConfig.from_dict(cfg))
        self.uplink = f"{cfg['prefix']}-up"
        self.agent: Agent | None = None

    def up(self) -> "VPNLab":
        self.lab.up()
        self.desc = self.lab.customer_description()
        self.agent = Agent({"pluginSettings": {"ipsec": {"uplink": {
            "interface": self.uplink, "gateway": "203.0.113.1", "prefixLength": 24}}}}).start()
        return self

    def down(self) -> None:
        ids: list[str] = []
        try:
            if self.agent:
                ids = [d.name for plugin in ("vpn.dynamic", "vpn.static") for d in instance_dirs(self.agent, plugin)]
                # Delete VPNs first so their namespaces and daemons go with them.
                for prefix in ("vpn.dynamic", "vpn.static"):
                    try:
                        for v in self.agent.call(f"{prefix}.list")["items"]:
                            self.agent.call(f"{prefix}.delete", id=v["id"])
                    except Exception:
                        pass
                self.agent.cleanup()
        finally:
            self.lab.down()
            remove_leftover_instances(ids)

    def tenant(self, hosts: Hosts, name: str = "v1", cidr: str = "100.64.1.10/24") -> "object":
        a = self.agent
        a.call("router.create", name="r1")
        a.call("bridge.create", name="b1")
        a.call("port.create", device="r1", name="r1-b1", address="100.64.1.1/24")
        a.call("port.create", device="b1", name="b1-r1")
        a.call("port.link", port="b1-r1", peer="r1-b1")
        vm = hosts.vm(name, cidr, "100.64.1.1")
        a.call("port.create", device="b1", name=f"{name}p")
        a.call("port.bind", port=f"{name}p", interface=vm.host_if)
        return vm

    def dynamic_spec(self, name: str = "aws1", **over) -> dict:
        t = self.desc["aws"]["tunnels"]
        spec = {
            "name": name, "virtualRouter": "r1",
            "ipsecPairingA": {"publicIp": t[0]["customer_outside_ip"], "peerIp": t[0]["aws_outside_ip"], "preSharedKey": t[0]["psk"],
                              "ikeVersion": self.desc["aws"]["ike_version"]},
            "ipsecPairingB": {"publicIp": t[1]["customer_outside_ip"], "peerIp": t[1]["aws_outside_ip"], "preSharedKey": t[1]["psk"],
                              "ikeVersion": self.desc["aws"]["ike_version"]},
            "bgpPairingA": {"localAsn": 65000, "remoteAsn": 64512, "localIp": t[0]["customer_inside_ip"],
                            "holdTime": self.desc["aws"]["bgp_hold_time"], "keepalive": self.desc["aws"]["bgp_keepalive_time"]},
            "bgpPairingB": {"localAsn": 65000, "remoteAsn": 64512, "localIp": t[1]["customer_inside_ip"],
                            "holdTime": self.desc["aws"]["bgp_hold_time"], "keepalive": self.desc["aws"]["bgp_keepalive_time"]},
            "localSubnets": ["100.64.1.0/24"],
        }
        spec.update(over)
        return spec

    def static_spec(self, peer: str, name: str, local: list[str] | None = None, **over) -> dict:
        p = next(x for x in self.desc["policy_peers"] if x["name"] == peer)
        cs = p["cloudstack"]
        pairing = {"publicIp": p["customer_outside_ip"], "peerIp": p["peer_outside_ip"], "preSharedKey": cs["ipsecpsk"],
                   "ikepolicy": cs["ikepolicy"], "esppolicy": cs["esppolicy"], "ikelifetime": cs["ikelifetime"],
                   "esplifetime": cs["esplifetime"], "dpd": cs["dpd"], "ikeversion": cs["ikeversion"],
                   "splitconnections": cs["splitconnections"]}
        pairing.update(over.pop("pairing", {}))
        spec = {"name": name, "virtualRouter": "r1", "localSubnets": local or ["100.64.1.0/24"],
                "remoteSubnets": p["peer_subnets"], "ipsecPairing": pairing}
        spec.update(over)
        return spec


def tunnels(agent: Agent, vpn: str) -> dict[str, dict]:
    v = agent.call("vpn.dynamic.status", id=vpn)["items"][0]
    return {t["tunnel"]: t for t in v["tunnels"]}


def wait_tunnels(agent: Agent, vpn: str, states: dict[str, str], timeout: float = 40) -> dict:
    def ok():
        ts = tunnels(agent, vpn)
        return ts if all(ts.get(k, {}).get("state") == s for k, s in states.items()) else None
    return wait_until(ok, timeout=timeout, interval=0.25, what=f"{vpn} tunnels {states}")


def learned_routes(agent: Agent, router: str = "r1") -> list[dict]:
    return [r for r in agent.call("route.list", router=router)["items"] if r["source"] == "learned"]


def continuous_ping(vm, target: str, seconds: float, interval: float = 0.05):
    """Starts a ping in the background; returns a function giving (sent, received)."""
    count = int(seconds / interval)
    p = vm.spawn(["ping", "-n", "-i", str(interval), "-c", str(count), "-W", "1", target])

    def result():
        out, _ = p.communicate(timeout=seconds + 30)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    return result


def instance_dirs(agent: Agent, plugin: str) -> list[Path]:
    d = Path(agent.state_dir) / "plugins" / plugin / "instances"
    return sorted(d.iterdir()) if d.exists() else []


def swanctl_sas(instance_dir: Path) -> str:
    return run(["swanctl", "--list-sas", "--raw", "--uri", f"unix://{instance_dir}/charon/charon.vici"], check=False).stdout


def pid_of(process_state: str) -> int:
    m = re.search(r"pid (\d+)", process_state)
    assert m, process_state
    return int(m.group(1))


def warren_namespaces() -> list[str]:
    out = run(["ip", "netns", "list"]).stdout
    return [l.split()[0] for l in out.splitlines() if l.startswith("warren-vpn-")]


def remove_leftover_instances(ids: list[str]) -> None:
    """Removes the instance namespaces (and their daemons, by PID) a failed test of this
    agent left behind; `ids` are the agent's instance IDs, so nothing else is touched."""
    for ns in [n for n in warren_namespaces() if n.removeprefix("warren-vpn-") in ids]:
        pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        run(["ip", "netns", "del", ns], check=False)
    for i in ids:
        for link in (f"wvo{i}", f"wvi{i}"):
            run(["ip", "link", "del", link], check=False)
