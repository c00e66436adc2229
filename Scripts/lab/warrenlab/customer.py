"""TEST-ONLY: a hand-made customer side (what Warren will build), for selftest.py.

Not part of the product. It follows the VPN-REFERENCE recipe so that the lab can be
proven before Warren exists, and so that Docs/lab.md can record the exact customer
configuration that worked. Layout (prefix `<p>`):

    <p>-up (root, the lab's uplink)  --macvlan-->  out 203.0.113.10  in <p>-ca
                                      --macvlan-->  out 203.0.113.11  in <p>-cb
                                      --macvlan-->  out 203.0.113.20  in <p>-ccs ...
    <p>-clan: bridge joining ca (100.64.1.2), cb (.3), static instances (.4, .5, ...)
              and the tenant host <p>-th (100.64.1.10)
    extra customer subnets of a policy peer (e.g. 100.64.4.0/24) hang off that
    static instance (.1) with a host at .10 (<p>-th2, <p>-th3, ...)

- Dynamic instances (one per AWS tunnel, like Warren's DynamicVPN IPsec instances):
  one charon (kernel-libipsec) + one BIRD doing eBGP over the inside /30; the BIRD
  also has an iBGP session to the tenant host (next hop self) — the stand-in for
  Warren injecting learned routes into the tenant router.
- Static instances (one per policy peer, like StaticVPN): one charon, one CHILD_SA
  per (local, remote) subnet pair or one with all subnets, static routes into the TUN.
- `Supervisor`: a thread that re-initiates missing CHILD_SAs (libipsec never
  sends acquires and keyingtries does not cover refused attempts: pitfall 5).
  Warren's IPsec plugin has to do the same.

Lifetimes differ from the peers' (pitfall 6); the customer never sets its TUN down
(the updown script removes the inside address instead: pitfall 7).

Threading: `CustomerSide` is driven by one thread; `Supervisor` runs in its own
daemon thread and only calls `swanctl` (list, initiate) on the instances' sockets.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import bird as birdmod
from .errors import LabError
from .host import Daemon, create_namespace, delete_namespace, ip_batch, ns_run, run
from .lab import CUSTOMER_NAMESPACES, Lab
from .peers import TUN, mss_clamp_rules, nft_apply
from .strongswan import (CUSTOMER_RETRANSMISSION, SWANCTL, Charon, ChildSpec, ConnSpec,
                         render_strongswan_conf, render_swanctl_conf, render_updown,
                         summarize_sas)

TENANT_LAN = ipaddress.ip_network("100.64.1.0/24")
TENANT_HOST = "100.64.1.10"

#: Customer lifetimes: deliberately different from AWS's 28800/3600 (pitfall 6).
CUSTOMER_IKE_LIFE, CUSTOMER_IKE_REKEY, CUSTOMER_IKE_RAND = 15840, 14400, 720
CUSTOMER_ESP_LIFE, CUSTOMER_ESP_REKEY, CUSTOMER_ESP_RAND = 3000, 2700, 180


@dataclass
class Instance:
    """One customer IPsec instance namespace."""

    ns: str
    charon: Charon
    conn: str
    children: list[str]
    bird: birdmod.Bird | None = None
    description: str = ""
    initiate_proc: subprocess.Popen | None = None
    last_attempt: float = 0.0
    last_failed: bool = False
    attempts: int = 0


class Supervisor(threading.Thread):
    """Keeps every expected CHILD_SA of every instance up by re-initiating it."""

    def __init__(self, instances: list[Instance], interval: float = 0.5, backoff: float = 1.0):
        super().__init__(daemon=True, name="customer-supervisor")
        self.instances = instances
        self.interval = interval
        self.backoff = backoff
        self._halt = threading.Event()
        self.errors: list[str] = []

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)
        for inst in self.instances:
            if inst.initiate_proc and inst.initiate_proc.poll() is None:
                inst.initiate_proc.kill()
                inst.initiate_proc.wait()

    def run(self) -> None:
        while not self._halt.is_set():
            for inst in self.instances:
                try:
                    self._tend(inst)
                except LabError as exc:
                    if len(self.errors) < 50:
                        self.errors.append(f"{inst.ns}: {exc}")
            self._halt.wait(self.interval)

    def _tend(self, inst: Instance) -> None:
        if inst.initiate_proc is not None:
            rc = inst.initiate_proc.poll()
            if rc is None:
                return  # an initiation is under way
            inst.initiate_proc = None
            inst.last_failed = rc != 0
        if inst.last_failed and time.monotonic() - inst.last_attempt < self.backoff:
            return  # refused or timed out: do not hammer the peer
        d = inst.charon.daemon()
        if not d or not d.alive():
            return
        sas = [sa for sa in inst.charon.list_sas() if sa.get("name") == inst.conn]
        if sas and not any(sa.get("state") == "ESTABLISHED" for sa in sas):
            return  # an IKE SA is being set up (by us, charon's own retry, or the peer)
        installed, pending = set(), set()
        for sa in sas:
            for child in (sa.get("child-sas") or {}).values():
                if not isinstance(child, dict):
                    continue
                if child.get("state") in ("INSTALLED", "REKEYING", "REKEYED"):
                    installed.add(child.get("name"))
                else:
                    pending.add(child.get("name"))
        for name in inst.children:
            if name in installed or name in pending:
                continue
            inst.last_attempt = time.monotonic()
            inst.attempts += 1
            inst.initiate_proc = subprocess.Popen(
                [SWANCTL, "--initiate", "--ike", inst.conn, "--child", name, "--timeout", "30",
                 "--uri", inst.charon.uri], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return  # one at a time per instance


@dataclass
class CustomerSide:
    """The hand-made customer side for a running `Lab`. See module docstring."""

    lab: Lab
    instances: list[Instance] = field(default_factory=list)
    supervisor: Supervisor | None = None
    tenant_routes: list[str] = field(default_factory=list)
    extra_hosts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prefix = self.lab.prefix
        self.dir = Path(self.lab.config.state_dir) / "customer"
        self.lan_ns = f"{self.prefix}-clan"
        self.th_ns = f"{self.prefix}-th"
        self.th_bird = birdmod.Bird(self.th_ns, self.dir / "th")

    # ------------------------------------------------------------------ names
    def namespaces(self) -> list[str]:
        """Every namespace this customer side may create (fixed names plus one static
        instance per policy peer of the lab)."""
        names = list(CUSTOMER_NAMESPACES) + [f"c{p.name}" for p in self.lab.config.policy_peers]
        return [f"{self.prefix}-{n}" for n in dict.fromkeys(names)]

    def down(self) -> None:
        """Stops the supervisor and every customer daemon; deletes the namespaces."""
        if self.supervisor:
            self.supervisor.stop()
            self.supervisor = None
        for rec in sorted(self.dir.glob("*/*.lab.json")) if self.dir.is_dir() else []:
            d = Daemon.load(rec)
            if d and d.namespace in self.namespaces():
                d.kill()
        for ns in self.namespaces():
            delete_namespace(ns)
        self.instances = []

    # ------------------------------------------------------------------ up
    def up(self, *, supervise: bool = True) -> None:
        """Builds the customer side against the lab's customer description."""
        self.down()
        if self.dir.is_dir() and not self.dir.is_symlink():
            shutil.rmtree(self.dir)
        self.extra_hosts, self.tenant_routes = {}, []
        desc = self.lab.customer_description()
        uplink = desc["uplink"]
        try:
            for ns in (self.lan_ns, self.th_ns):
                create_namespace(ns, forwarding=False)
            ip_batch(self.lan_ns, ["link add br0 type bridge", "link set br0 up"])
            self._lan_port(self.th_ns, "th", f"{TENANT_HOST}/24")
            lan_index = 2
            gateways = []
            if "aws" in desc:
                for t in desc["aws"]["tunnels"]:
                    inst, lan_ip = self._dynamic_instance(desc["aws"], t, uplink, lan_index)
                    gateways.append((f"inst{t['name'].lower()}", lan_ip, None))
                    self.instances.append(inst)
                    lan_index += 1
                self.th_bird.write_config(birdmod.render_lan_host(
                    self.th_bird.rundir, router_id=TENANT_HOST, asn=desc["aws"]["customer_asn"],
                    gateways=gateways, description="customer tenant host"))
                self.th_bird.start()
            lan_index = max(lan_index, 4)
            for p in desc["policy_peers"]:
                self.instances.append(self._static_instance(p, uplink, lan_index))
                lan_index += 1
            ip_batch(self.th_ns, [f"route add {r}" for r in self.tenant_routes])
        except BaseException:
            self.down()
            raise
        if supervise:
            self.supervisor = Supervisor(self.instances)
            self.supervisor.start()

    def _lan_port(self, ns: str, port: str, cidr: str) -> None:
        run(["ip", "link", "add", "lan", "netns", ns, "type", "veth", "peer", "name", port,
             "netns", self.lan_ns])
        ip_batch(self.lan_ns, [f"link set {port} master br0", f"link set {port} up"])
        ip_batch(ns, [f"addr add {cidr} dev lan", "link set lan up"])

    def _outside(self, ns: str, addr: str, uplink: dict) -> None:
        # the self-test's stand-in for Warren's virtual switch: a macvlan on <p>-up
        run(["ip", "link", "add", "link", uplink["interface"], "name", "out", "netns", ns,
             "type", "macvlan", "mode", "bridge"])
        plen = ipaddress.ip_network(uplink["cidr"]).prefixlen
        ip_batch(ns, [f"addr add {addr}/{plen} dev out", "link set out up",
                      f"route add default via {uplink['gateway']} dev out"])

    def _dynamic_instance(self, aws: dict, t: dict, uplink: dict, lan_index: int):
        short = f"c{t['name'].lower()}"
        ns = f"{self.prefix}-{short}"
        rundir = self.dir / short
        lan_ip = str(TENANT_LAN.network_address + lan_index)
        create_namespace(ns, forwarding=True)
        self._outside(ns, t["customer_outside_ip"], uplink)
        self._lan_port(ns, short, f"{lan_ip}/24")
        nft_apply(ns, mss_clamp_rules())
        charon = Charon(ns, rundir)
        child = ChildSpec("tunnel", ["0.0.0.0/0"], ["0.0.0.0/0"], aws["esp_proposal"],
                          CUSTOMER_ESP_LIFE, CUSTOMER_ESP_REKEY, CUSTOMER_ESP_RAND,
                          dpd_action="restart", start_action="none", close_action="none",
                          updown=str(rundir / "updown.sh"))
        conn = ConnSpec("tunnel", aws["ike_version"], t["customer_outside_ip"], t["aws_outside_ip"],
                        aws["ike_proposal"], t["psk"], CUSTOMER_IKE_LIFE, CUSTOMER_IKE_REKEY,
                        CUSTOMER_IKE_RAND, dpd_delay=10, dpd_timeout=30, keyingtries=0,
                        children=[child])
        charon.write_config(
            render_strongswan_conf(rundir, role=f"customer instance for tunnel {t['name']}",
                                   retransmission=CUSTOMER_RETRANSMISSION),
            render_swanctl_conf([conn]),
            render_updown(rundir, inside_cidr_address=f"{t['customer_inside_ip']}/30"))
        bird = birdmod.Bird(ns, rundir)
        bird.write_config(birdmod.render_tunnel_endpoint(rundir, birdmod.TunnelBgp(
            router_id=t["customer_outside_ip"], local_inside_ip=t["customer_inside_ip"],
            peer_inside_ip=t["aws_inside_ip"], local_asn=aws["customer_asn"], peer_asn=aws["aws_asn"],
            hold_time=aws["bgp_hold_time"], keepalive_time=aws["bgp_keepalive_time"],
            originate=[str(TENANT_LAN)], outside_addrs=[t["aws_outside_ip"], t["customer_outside_ip"]],
            receive_limit=1000, lan_ip=lan_ip, lan_hosts=(TENANT_HOST,),
            description=f"customer instance, tunnel {t['name']}")))
        charon.start()
        charon.load()
        bird.start()
        return Instance(ns, charon, "tunnel", ["tunnel"], bird, f"tunnel {t['name']}"), lan_ip

    def _static_instance(self, p: dict, uplink: dict, lan_index: int) -> Instance:
        short = f"c{p['name']}"
        ns = f"{self.prefix}-{short}"
        rundir = self.dir / short
        lan_ip = str(TENANT_LAN.network_address + lan_index)
        create_namespace(ns, forwarding=True)
        self._outside(ns, p["customer_outside_ip"], uplink)
        self._lan_port(ns, short, f"{lan_ip}/24")
        for subnet in p["customer_subnets"]:
            net = ipaddress.ip_network(subnet)
            if net == TENANT_LAN:
                continue
            if subnet in self.extra_hosts:
                raise LabError(f"customer subnet {subnet} is used by two policy peers; the "
                               f"self-test customer side supports that only for {TENANT_LAN}")
            host_ns = f"{self.prefix}-th{len(self.extra_hosts) + 2}"
            create_namespace(host_ns, forwarding=False)
            run(["ip", "link", "add", f"s{len(self.extra_hosts)}", "netns", ns, "type", "veth",
                 "peer", "name", "lan", "netns", host_ns])
            gw, host = net.network_address + 1, net.network_address + 10
            ip_batch(ns, [f"addr add {gw}/{net.prefixlen} dev s{len(self.extra_hosts)}",
                          f"link set s{len(self.extra_hosts)} up"])
            ip_batch(host_ns, [f"addr add {host}/{net.prefixlen} dev lan", "link set lan up",
                               f"route add default via {gw} dev lan"])
            self.extra_hosts[subnet] = host_ns
        nft_apply(ns, mss_clamp_rules())
        for remote in p["peer_subnets"]:
            self.tenant_routes.append(f"{remote} via {lan_ip} dev lan")
        if p["split_connections"]:
            children = [ChildSpec(f"l{li}r{ri}", [ls], [rs], p["esp_proposal"], CUSTOMER_ESP_LIFE,
                                  CUSTOMER_ESP_REKEY, CUSTOMER_ESP_RAND,
                                  updown=str(rundir / "updown.sh"))
                        for li, ls in enumerate(p["customer_subnets"])
                        for ri, rs in enumerate(p["peer_subnets"])]
        else:
            children = [ChildSpec("all", list(p["customer_subnets"]), list(p["peer_subnets"]),
                                  p["esp_proposal"], CUSTOMER_ESP_LIFE, CUSTOMER_ESP_REKEY,
                                  CUSTOMER_ESP_RAND, updown=str(rundir / "updown.sh"))]
        version = {"ike": 2, "ikev1": 1, "ikev2": 2}[p["ike_version"]]
        conn = ConnSpec("site", version, p["customer_outside_ip"], p["peer_outside_ip"],
                        p["ike_proposal"], p["psk"], CUSTOMER_IKE_LIFE, CUSTOMER_IKE_REKEY,
                        CUSTOMER_IKE_RAND, dpd_delay=10, dpd_timeout=30, keyingtries=0,
                        children=children)
        charon = Charon(ns, rundir)
        charon.write_config(
            render_strongswan_conf(rundir, role=f"customer static instance for {p['name']}",
                                   retransmission=CUSTOMER_RETRANSMISSION),
            render_swanctl_conf([conn]), render_updown(rundir, inside_cidr_address=None))
        charon.start()
        ip_batch(ns, [f"route replace {r} dev {TUN}" for r in p["peer_subnets"]])
        charon.load()
        return Instance(ns, charon, "site", [c.name for c in children], None, f"policy peer {p['name']}")

    # ------------------------------------------------------------------ status
    def instance(self, short: str) -> Instance:
        ns = f"{self.prefix}-{short}"
        for inst in self.instances:
            if inst.ns == ns:
                return inst
        raise LabError(f"no customer instance {ns}")

    def status(self) -> dict:
        out = {}
        for inst in self.instances:
            st = summarize_sas(inst.charon.list_sas(), inst.conn)
            st["expected_children"] = inst.children
            if inst.bird:
                protos = inst.bird.protocols()
                st["bgp"] = protos.get("tunnel", {}).get("info", "DOWN")
                st["bgp_lan"] = protos.get("lan0", {}).get("info", "DOWN")
            out[inst.ns] = st
        return out

    def route_via(self, ns: str, dest: str) -> str:
        """The gateway (or device) `ip route get` picks in `ns` for `dest`."""
        out = ns_run(ns, ["ip", "-4", "route", "get", dest], check=False).stdout
        toks = out.split()
        if "via" in toks:
            return toks[toks.index("via") + 1]
        if "dev" in toks:
            return "dev " + toks[toks.index("dev") + 1]
        return "unreachable"
