"""The VPN test lab: the far side of Warren's uplink.

What it builds (names carry the lab prefix `<p>`, default "wlab"):

    root ns:  <p>-up  (veth, no address; Warren binds its virtual switch to it)
                 |
    <p>-wan:  up0 203.0.113.1/24 (gateway for Warren's public IPs)   "Internet" router
              pub (bridge) 198.51.100.1/24 -- to-awsa, to-awsb, to-cs, ...
                 |
    <p>-awsa  wan 198.51.100.10, vpc 100.64.200.2, charon + BIRD (tunnel A)
    <p>-awsb  wan 198.51.100.11, vpc 100.64.200.3, charon + BIRD (tunnel B)
    <p>-vpc   bridge br0 joining awsa, awsb, host
    <p>-host  vpc 100.64.200.10/24, BIRD with iBGP to awsa (local pref 200) and awsb (100)
    <p>-cs    wan 198.51.100.20, l0 100.64.210.1, l1 100.64.211.1, charon (policy peer)
    <p>-cs1 / <p>-cs2   hosts 100.64.210.10 / 100.64.211.10

State: everything a later process needs (resolved config incl. PSKs, namespaces
created, daemon pid records, failure modes, logs) lives in the lab's state
directory (default /tmp/<p>-lab/, mode 0700; lab.json is 0600), so `labctl.py`
invocations can act on a lab another process built.

Invariants:
- `down()` is idempotent and also removes leftovers of a crashed run with the same
  prefix: it stops recorded daemons by PID, kills what is left inside the lab's own
  namespaces by PID, deletes those namespaces and the root `<p>-up` link.
- `up()` starts from `down()`; if any step fails it tears down again and re-raises.
- Only this lab's namespaces/links are touched: exact names derived from the prefix
  and the recorded namespace list, never a wildcard.

Threading: not thread-safe; one caller drives a lab at a time.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Sequence

from .config import LabConfig
from .errors import LabError
from .host import (Daemon, create_namespace, delete_namespace, delete_root_link, ip_batch,
                   namespace_exists, ns_cmd, ns_run, run)
from .peers import AwsPeer, PolicyPeer
from . import bird as birdmod

STATE_FILE = "lab.json"


#: Namespaces of the self-test's hand-made customer side (warrenlab.customer); `down()`
#: removes them too, so a crashed self-test leaves nothing behind after `labctl down`.
CUSTOMER_NAMESPACES = ["ca", "cb", "clan", "th"] + [f"th{i}" for i in range(2, 10)] + ["ccs", "ccs-b"]


def default_namespaces(prefix: str) -> list[str]:
    """Every namespace name a default lab (and the self-test's customer side) with this
    prefix may create."""
    names = ["wan", "awsa", "awsb", "vpc", "host", "cs", "cs1", "cs2", "cs-b", "cs-b1", "cs-b2"]
    return [f"{prefix}-{n}" for n in names + CUSTOMER_NAMESPACES]


class Lab:
    """A whole lab. Build with `Lab(LabConfig(...))` or `Lab.load(prefix)`."""

    def __init__(self, config: LabConfig) -> None:
        if _resolved(config):
            config.validate()
            self.config = config
        else:
            self.config = config.resolve()
        c = self.config
        self.prefix = c.prefix
        self.state_dir = Path(c.state_dir)
        self.wan_ns = f"{c.prefix}-wan"
        self.vpc_ns = f"{c.prefix}-vpc"
        self.host_ns = f"{c.prefix}-host"
        self.aws_peers = [AwsPeer(c, t) for t in c.aws.tunnels] if c.aws else []
        self.policy_peers = [PolicyPeer(c, p) for p in c.policy_peers]
        self.host_bird = birdmod.Bird(self.host_ns, self.state_dir / "host")

    # ------------------------------------------------------------------ loading
    @staticmethod
    def load(prefix: str = "wlab", state_dir: str | None = None) -> "Lab":
        """The lab whose state directory (default /tmp/<prefix>-lab) holds lab.json."""
        path = Path(state_dir or f"/tmp/{prefix}-lab") / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise LabError(f"no lab state at {path}: is the lab with prefix {prefix!r} up?") from exc
        except (OSError, ValueError) as exc:
            raise LabError(f"cannot read lab state {path}: {exc}") from exc
        return Lab(LabConfig.from_dict(data["config"]))

    def namespaces(self) -> list[str]:
        """The namespaces this lab creates, in creation order."""
        out = [self.wan_ns]
        if self.aws_peers:
            out += [self.vpc_ns, self.host_ns] + [p.ns for p in self.aws_peers]
        for p in self.policy_peers:
            out += [p.ns] + p.host_namespaces
        return out

    def _write_state(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        path = self.state_dir / STATE_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"config": self.config.to_dict(), "namespaces": self.namespaces(),
                       "uplink": self.config.uplink_name}, fh, indent=2, sort_keys=True)

    # ------------------------------------------------------------------ up/down
    def up(self) -> dict:
        """Builds the lab (after cleaning any leftovers) and returns timings in seconds."""
        t0 = time.monotonic()
        self.down()
        self._clear_run_dirs()
        self._write_state()
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return {"up_seconds": round(time.monotonic() - t0, 3)}

    def _clear_run_dirs(self) -> None:
        subdirs = ["host"] + [p.short for p in self.aws_peers] + [p.cfg.name for p in self.policy_peers]
        for sub in subdirs:
            path = self.state_dir / sub
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)

    def _build(self) -> None:
        c = self.config
        for ns in self.namespaces():
            create_namespace(ns, forwarding=True)
        # uplink: root end without any address (IPv6 off so no link-local appears)
        uplink = c.uplink_name
        run(["ip", "link", "add", uplink, "type", "veth", "peer", "name", "up0", "netns", self.wan_ns])
        with open(f"/proc/sys/net/ipv6/conf/{uplink}/disable_ipv6", "w") as fh:
            fh.write("1\n")
        run(["ip", "link", "set", uplink, "up"])
        ip_batch(self.wan_ns, [
            f"addr add {c.uplink_gateway} dev up0", "link set up0 up",
            "link add pub type bridge", f"addr add {c.peer_gateway} dev pub", "link set pub up",
        ])
        if self.aws_peers:
            a = c.aws
            vpc = ipaddress.ip_network(a.vpc_cidr)
            ip_batch(self.vpc_ns, ["link add br0 type bridge", "link set br0 up"])
            run(["ip", "link", "add", "vpc", "netns", self.host_ns, "type", "veth", "peer", "name",
                 "host", "netns", self.vpc_ns])
            ip_batch(self.vpc_ns, ["link set host master br0", "link set host up"])
            ip_batch(self.host_ns, [f"addr add {a.vpc_host_ip}/{vpc.prefixlen} dev vpc", "link set vpc up"])
            for peer in self.aws_peers:
                peer.create_links(self.wan_ns, self.vpc_ns)
            # the VPC host: iBGP to every endpoint, preferring the first tunnel
            gateways = [(p.short, p.tunnel.vpc_lan_ip, 200 - 100 * i) for i, p in enumerate(self.aws_peers)]
            self.host_bird.write_config(birdmod.render_lan_host(
                self.host_bird.rundir, router_id=a.vpc_host_ip, asn=a.asn, gateways=gateways,
                description="VPC host"))
        for peer in self.policy_peers:
            peer.create_links(self.wan_ns)
        for peer in self.aws_peers:
            peer.start()
        for peer in self.policy_peers:
            peer.start()
        if self.aws_peers:
            self.host_bird.start()

    def down(self) -> None:
        """Stops every daemon by PID and deletes every namespace and the uplink. Idempotent."""
        names = list(dict.fromkeys(self.namespaces() + default_namespaces(self.prefix)
                                   + self._recorded_namespaces()))
        for record in sorted(self.state_dir.glob("*/*.lab.json")) if self.state_dir.is_dir() else []:
            d = Daemon.load(record)
            if d and d.namespace in names:
                d.kill()
        for ns in names:
            delete_namespace(ns)
        delete_root_link(self.config.uplink_name)
        for recorded in self._recorded_uplinks():
            if recorded.startswith(self.prefix + "-"):
                delete_root_link(recorded)

    def _recorded_state(self) -> dict:
        try:
            return json.loads((self.state_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def _recorded_namespaces(self) -> list[str]:
        return [n for n in self._recorded_state().get("namespaces", [])
                if isinstance(n, str) and n.startswith(self.prefix + "-")]

    def _recorded_uplinks(self) -> list[str]:
        up = self._recorded_state().get("uplink")
        return [up] if isinstance(up, str) else []

    # ------------------------------------------------------------------ lookup
    def peer(self, name: str) -> AwsPeer | PolicyPeer:
        """An AWS tunnel by name ("A", "B") or a policy peer by name ("cs")."""
        for p in self.aws_peers:
            if p.tunnel.name.lower() == name.lower():
                return p
        for p in self.policy_peers:
            if p.cfg.name == name:
                return p
        names = [p.tunnel.name for p in self.aws_peers] + [p.cfg.name for p in self.policy_peers]
        raise LabError(f"no tunnel or peer named {name!r} (have {names})")

    def namespace(self, short: str) -> str:
        """Full namespace name for a short one ("host" -> "wlab-host"); full names of
        this lab are accepted as they are. Anything else raises `LabError`."""
        full = short if short.startswith(self.prefix + "-") else f"{self.prefix}-{short}"
        if full not in self.namespaces():
            raise LabError(f"{short!r} is not a namespace of lab {self.prefix!r} "
                           f"(have {[n[len(self.prefix) + 1:] for n in self.namespaces()]})")
        return full

    # ------------------------------------------------------------------ operations
    def fail_tunnel(self, name: str, mode: str = "silent") -> None:
        """Fails tunnel/peer `name`: "silent" (outage, no IKE DELETE) or "clean" (DELETE sent)."""
        self.peer(name).fail(mode)

    def heal_tunnel(self, name: str) -> None:
        """Undoes `fail_tunnel`."""
        self.peer(name).heal()

    def restart_peer(self, name: str) -> None:
        """kill -9 the peer's charon and start it again."""
        self.peer(name).restart()

    def host_exec(self, ns: str, cmd: Sequence[str] | str, *, timeout: float = 60.0,
                  check: bool = False) -> subprocess.CompletedProcess[str]:
        """Runs `cmd` (argv list, or a string for `sh -c`) in lab namespace `ns`."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        return run(ns_cmd(self.namespace(ns), argv), check=check, timeout=timeout)

    def ping(self, ns: str, target: str, count: int = 3, interval: float = 0.2,
             deadline: float | None = None) -> dict:
        """Pings `target` from lab namespace `ns`; returns counts and average RTT."""
        ipaddress.ip_address(target)
        argv = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "1"]
        if deadline:
            argv += ["-w", str(int(deadline))]
        proc = self.host_exec(ns, argv + [target], timeout=(deadline or count * interval + 5) + 5)
        return parse_ping_summary(proc.stdout, target)

    def vpc_ping(self, target: str, count: int = 3, interval: float = 0.2) -> dict:
        """Pings `target` (e.g. Warren's tenant host) from the VPC host."""
        if not self.aws_peers:
            raise LabError("this lab has no AWS side (aws is null in its config)")
        return self.ping("host", target, count, interval)

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        """Per tunnel: IKE/CHILD state (swanctl --list-sas), BGP state (birdc show
        protocols), failure mode, daemon PIDs and log paths; plus the VPC host."""
        out: dict = {"prefix": self.prefix, "state_dir": str(self.state_dir),
                     "namespaces": {n: namespace_exists(n) for n in self.namespaces()},
                     "uplink": self.config.uplink_name,
                     "uplink_exists": os.path.exists(f"/sys/class/net/{self.config.uplink_name}")}
        out["tunnels"] = {p.tunnel.name: p.status() for p in self.aws_peers}
        out["policy_peers"] = {p.cfg.name: p.status() for p in self.policy_peers}
        if self.aws_peers:
            d = self.host_bird.daemon()
            protos = self.host_bird.protocols() if d and d.alive() else {}
            routes = ns_run(self.host_ns, ["ip", "-4", "route", "show", "proto", "bird"],
                            check=False).stdout.strip().splitlines() if namespace_exists(self.host_ns) else []
            out["vpc_host"] = {
                "namespace": self.host_ns, "address": self.config.aws.vpc_host_ip,
                "bird_pid": d.pid if d else None,
                "sessions": {p.short: protos.get(p.short, {}).get("info", "DOWN") for p in self.aws_peers},
                "routes": routes, "logs": {"bird": str(self.host_bird.log)},
            }
        return out

    # ------------------------------------------------------------------ health
    def healthy(self, name: str) -> bool:
        """AWS tunnel: IKE ESTABLISHED, a CHILD_SA INSTALLED and BGP Established.
        Policy peer: every expected CHILD_SA installed."""
        peer = self.peer(name)
        st = peer.status()
        ike = st["ike"]
        if isinstance(peer, AwsPeer):
            return (ike.get("ike_state") == "ESTABLISHED" and ike.get("children_installed", 0) >= 1
                    and st["bgp"]["established"])
        installed = {c["name"] for c in ike.get("children", []) if c["state"] == "INSTALLED"}
        return ike.get("ike_state") == "ESTABLISHED" and set(st["expected_children"]) <= installed

    def wait_healthy(self, names: Sequence[str] | None = None, timeout: float = 30.0) -> float:
        """Waits until every named tunnel/peer (default: all) is `healthy`; returns the
        seconds waited. Raises `LabError` naming the ones that are not."""
        names = list(names) if names else ([p.tunnel.name for p in self.aws_peers]
                                           + [p.cfg.name for p in self.policy_peers])
        t0 = time.monotonic()
        while True:
            bad = [n for n in names if not self.healthy(n)]
            if not bad:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise LabError(f"not healthy after {timeout:.0f}s: {bad} (see status() and "
                               f"the logs under {self.state_dir})")
            time.sleep(0.1)

    # ------------------------------------------------------------------ customer side
    def customer_description(self) -> dict:
        """What the customer side (Warren) must configure to talk to this lab. Contains
        the PSKs: hand it to the test, do not log it."""
        c = self.config
        uplink_gw = ipaddress.ip_interface(c.uplink_gateway)
        desc: dict = {
            "prefix": c.prefix,
            "uplink": {"interface": c.uplink_name, "gateway": str(uplink_gw.ip),
                       "cidr": str(uplink_gw.network)},
        }
        if c.aws:
            a = c.aws
            desc["aws"] = {
                "aws_asn": a.asn, "customer_asn": a.customer_asn,
                "vpc_cidr": a.vpc_cidr, "vpc_host": a.vpc_host_ip,
                "ike_version": a.ike_version, "ike_proposal": a.ike_proposal,
                "esp_proposal": a.esp_proposal, "bgp_hold_time": a.hold_time,
                "bgp_keepalive_time": a.keepalive_time, "dpd_delay": a.dpd_delay,
                "dpd_timeout": a.dpd_timeout, "aws_initiates": a.initiate,
                "aws_ike_lifetime": a.ike_lifetime, "aws_esp_lifetime": a.esp_lifetime,
                "max_customer_prefixes": a.customer_prefix_limit,
                "tunnels": [{
                    "name": t.name, "aws_outside_ip": t.outside_ip,
                    "customer_outside_ip": t.customer_outside_ip, "psk": t.psk,
                    "inside_cidr": t.inside_cidr, "aws_inside_ip": t.aws_inside_ip,
                    "customer_inside_ip": t.customer_inside_ip, "aws_med": t.med,
                } for t in a.tunnels],
            }
        desc["policy_peers"] = []
        for p in self.policy_peers:
            cfg = p.cfg
            desc["policy_peers"].append({
                "name": cfg.name, "peer_outside_ip": cfg.outside_ip,
                "customer_outside_ip": cfg.customer_outside_ip, "psk": cfg.psk,
                "peer_subnets": cfg.local_subnets, "customer_subnets": cfg.remote_subnets,
                "peer_hosts": dict(zip(p.host_namespaces, p.host_addresses())),
                "ike_version": cfg.ike_version, "ike_proposal": cfg.ike_proposal,
                "esp_proposal": cfg.esp_proposal, "split_connections": cfg.split_connections,
                "peer_initiates": cfg.initiate,
                # the same, spelled as a CloudStack customer gateway
                "cloudstack": {
                    "gateway": cfg.outside_ip, "cidrlist": ",".join(cfg.local_subnets),
                    "ipsecpsk": cfg.psk, "ikepolicy": cfg.ike_policy, "esppolicy": cfg.esp_policy,
                    "ikelifetime": cfg.ike_lifetime, "esplifetime": cfg.esp_lifetime,
                    "dpd": cfg.dpd, "forceencap": True, "ikeversion": cfg.ike_version,
                    "splitconnections": cfg.split_connections,
                },
            })
        return desc


def _resolved(cfg: LabConfig) -> bool:
    aws_ok = cfg.aws is None or all(t.psk for t in cfg.aws.tunnels)
    return aws_ok and all(p.psk for p in cfg.policy_peers)


_PING_COUNTS = re.compile(r"(\d+) packets transmitted, (\d+) received")
_PING_RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")


def parse_ping_summary(text: str, target: str = "") -> dict:
    """Parses iputils ping's summary lines."""
    m = _PING_COUNTS.search(text)
    if not m:
        raise LabError(f"ping to {target} printed no summary: {text.strip()[-200:]!r}")
    sent, got = int(m.group(1)), int(m.group(2))
    r = _PING_RTT.search(text)
    return {"target": target, "transmitted": sent, "received": got,
            "loss_percent": round(100.0 * (sent - got) / sent, 1) if sent else 100.0,
            "rtt_avg_ms": float(r.group(2)) if r else None}
