"""The two kinds of VPN peer the lab emulates.

- `AwsPeer`: one AWS Site-to-Site VPN tunnel endpoint (namespace `<p>-aws<x>`): one
  charon (kernel-libipsec, TUN `ipsec0` holding the inside .1/30 while a CHILD_SA
  is installed), responder by default, AWS proposals, PSK, 0.0.0.0/0 selectors,
  DPD 10 s x 3 with action restart, AWS lifetimes (which differ from the customer's:
  pitfall 6), and one BIRD (AS 64512 by default) with eBGP to the customer's .2 and
  iBGP (next hop self) to the VPC host.
- `PolicyPeer`: a CloudStack-VPC-router / on-prem-firewall style peer (namespace
  `<p>-<name>`) with explicit local/remote subnets, one CHILD_SA per (local, remote)
  pair by default, CloudStack proposal strings, DPD restart, static routes into the
  TUN for the remote subnets, and one host namespace per local subnet.

Like AWS, the AWS endpoints do no path MTU discovery (no ICMP "fragmentation
needed" for packets too big for the tunnel) and do not clamp TCP MSS: the customer
side has to. The policy peer clamps MSS like a CloudStack VR / firewall would.

Failure injection (both kinds): `fail("silent")` drops every packet on the peer's
WAN interface with nftables (no IKE DELETE leaves); `fail("clean")` unloads the
connection so re-initiations are refused, then terminates the IKE SA (DELETE sent);
`heal()` undoes either; `restart()` kills charon with SIGKILL and starts it again.
The current failure mode is persisted in the peer's run directory, so a separate
CLI invocation can heal what another one failed.

Invariants: a peer touches only its own namespaces and run directory; every process
is stopped by PID (see host.Daemon). Threading: synchronous, one caller at a time
per peer.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from . import bird as birdmod
from .config import AwsConfig, AwsTunnelConfig, LabConfig, PolicyPeerConfig
from .errors import LabError
from .host import ip_batch, run
from .strongswan import (AWS_RETRANSMISSION, TUN, Charon, ChildSpec, ConnSpec, Retransmission,
                         render_strongswan_conf, render_swanctl_conf, render_updown,
                         summarize_sas)

#: TCP MSS for traffic through the 1400-byte TUN (1400 - 20 IP - 20 TCP).
TUN_MSS = 1360
FAIL_TABLE = "warrenlab_fail"
CLOUDSTACK_RETRANSMISSION = Retransmission(4.0, 1.8, 5)  # strongSwan's defaults


def mss_clamp_rules() -> str:
    """nft ruleset clamping TCP MSS of SYNs entering or leaving the TUN."""
    return f"""table inet warrenlab_mss {{
    chain forward {{
        type filter hook forward priority mangle; policy accept;
        oifname "{TUN}" tcp flags & (syn|rst) == syn tcp option maxseg size > {TUN_MSS} tcp option maxseg size set {TUN_MSS}
        iifname "{TUN}" tcp flags & (syn|rst) == syn tcp option maxseg size > {TUN_MSS} tcp option maxseg size set {TUN_MSS}
    }}
}}
"""


def no_pmtud_rules() -> str:
    """nft ruleset that makes an AWS endpoint behave like AWS: no path MTU discovery.
    Packets too big for the 1400-byte TUN are dropped without an ICMP
    "fragmentation needed", so the customer side must clamp TCP MSS."""
    return """table inet warrenlab_aws_mtu {
    chain output {
        type filter hook output priority 0; policy accept;
        icmp type destination-unreachable icmp code frag-needed counter drop
    }
}
"""


def fail_rules(wan_if: str) -> str:
    """nft ruleset dropping everything in and out of `wan_if` (a silent outage)."""
    return f"""table inet {FAIL_TABLE} {{
    chain ingress {{ type filter hook prerouting priority -300; policy accept; iifname "{wan_if}" drop; }}
    chain egress {{ type filter hook output priority -300; policy accept; oifname "{wan_if}" drop; }}
    chain through {{ type filter hook forward priority -300; policy accept; oifname "{wan_if}" drop; }}
}}
"""


def nft_apply(ns: str, ruleset: str) -> None:
    run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input_text=ruleset)


def _rekey(life: int, margin: int, fuzz_percent: int) -> tuple[int, int]:
    """(rekey_time, rand_time) for a lifetime, margin and fuzz, as AWS describes them:
    rekey at life - margin - random(0 .. margin * fuzz%). strongSwan rekeys at
    rekey_time - random(0 .. rand_time), so rekey_time = life - margin."""
    rekey = max(life - margin, 2)
    rand = max(min(margin * fuzz_percent // 100, rekey - 1), 0)
    return rekey, rand


class _Endpoint:
    """Shared parts: namespace, run dir, charon, failure state."""

    conn_name = "tunnel"
    wan_if = "wan"

    def __init__(self, ns: str, rundir: Path) -> None:
        self.ns = ns
        self.rundir = rundir
        self.charon = Charon(ns, rundir)
        self._fail_file = rundir / "failure.json"

    # -- failure state -------------------------------------------------------
    def failures(self) -> list[str]:
        """Active failure modes ("silent", "clean"), persisted in the run directory."""
        try:
            modes = json.loads(self._fail_file.read_text())["modes"]
            return [m for m in modes if m in ("silent", "clean")]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def failure(self) -> str | None:
        """The active failure modes joined with '+', or None when healthy."""
        return "+".join(self.failures()) or None

    def _set_failures(self, modes: list[str]) -> None:
        if not modes:
            self._fail_file.unlink(missing_ok=True)
        else:
            self._fail_file.write_text(json.dumps({"modes": modes}) + "\n")

    def fail(self, mode: str = "silent") -> None:
        """Takes the tunnel down: `silent` (peer outage, nothing sent) or `clean`
        (connection unloaded so re-initiation is refused, IKE DELETE sent)."""
        modes = self.failures()
        if mode == "silent":
            if "silent" not in modes:
                nft_apply(self.ns, fail_rules(self.wan_if))
        elif mode == "clean":
            self.charon.unload_connections()
            self.charon.terminate_ike(self.conn_name, check=False)
        else:
            raise LabError(f"fail mode must be 'silent' or 'clean', got {mode!r}")
        if mode not in modes:
            modes.append(mode)
        self._set_failures(modes)

    def heal(self) -> None:
        """Undoes `fail()`: removes the drop rules and (re)loads the connection."""
        modes = self.failures()
        if "silent" in modes:
            run(["ip", "netns", "exec", self.ns, "nft", "delete", "table", "inet", FAIL_TABLE],
                check=False)
        if "clean" in modes:
            self.charon.load()
        self._set_failures([])

    def _conn_unloaded(self) -> bool:
        return "clean" in self.failures()

    def ike_status(self) -> dict:
        d = self.charon.daemon()
        alive = bool(d and d.alive())
        info: dict = {"charon_pid": d.pid if d else None, "charon_alive": alive}
        if alive:
            try:
                info.update(summarize_sas(self.charon.list_sas(), self.conn_name))
            except LabError as exc:
                info["error"] = str(exc)
        else:
            info.update({"ike_state": "DOWN", "children": [], "children_installed": 0})
        return info


class AwsPeer(_Endpoint):
    """One AWS tunnel endpoint. See module docstring."""

    def __init__(self, lab: LabConfig, tunnel: AwsTunnelConfig) -> None:
        if lab.aws is None:
            raise LabError("AwsPeer needs an aws section in the lab config")
        self.lab = lab
        self.aws: AwsConfig = lab.aws
        self.tunnel = tunnel
        self.short = f"aws{tunnel.name.lower()}"
        super().__init__(f"{lab.prefix}-{self.short}", Path(lab.state_dir) / self.short)
        self.bird = birdmod.Bird(self.ns, self.rundir)

    @property
    def inside_address(self) -> str:
        """The AWS end of the inside /30 with its prefix length (e.g. 169.254.10.1/30)."""
        return f"{self.tunnel.aws_inside_ip}/30"

    def conn_spec(self) -> ConnSpec:
        a, t = self.aws, self.tunnel
        child_rekey, child_rand = _rekey(a.esp_lifetime, a.rekey_margin, a.rekey_fuzz)
        ike_rekey, ike_rand = _rekey(a.ike_lifetime, 2 * a.rekey_margin, a.rekey_fuzz)
        child = ChildSpec(
            name=self.conn_name, local_ts=["0.0.0.0/0"], remote_ts=["0.0.0.0/0"],
            esp_proposals=a.esp_proposal, life_time=a.esp_lifetime, rekey_time=child_rekey,
            rand_time=child_rand, dpd_action=a.dpd_action if a.dpd_action != "none" else "clear",
            start_action="start" if a.initiate else "none",
            close_action="start" if a.initiate else "none",
            updown=str(self.rundir / "updown.sh"))
        return ConnSpec(
            name=self.conn_name, version=a.ike_version, local_addr=t.outside_ip,
            remote_addr=t.customer_outside_ip, proposals=a.ike_proposal, psk=t.psk or "",
            ike_life_time=a.ike_lifetime, ike_rekey_time=ike_rekey, ike_rand_time=ike_rand,
            dpd_delay=a.dpd_delay if a.dpd_action != "none" else 0, dpd_timeout=a.dpd_timeout,
            keyingtries=0 if a.initiate else 1, unique="replace", children=[child])

    def bgp_spec(self) -> birdmod.TunnelBgp:
        a, t = self.aws, self.tunnel
        return birdmod.TunnelBgp(
            router_id=t.outside_ip, local_inside_ip=t.aws_inside_ip,
            peer_inside_ip=t.customer_inside_ip, local_asn=a.asn, peer_asn=a.customer_asn,
            hold_time=a.hold_time, keepalive_time=a.keepalive_time, originate=[a.vpc_cidr],
            outside_addrs=[t.customer_outside_ip, t.outside_ip], med=t.med,
            receive_limit=a.customer_prefix_limit, lan_ip=t.vpc_lan_ip,
            lan_hosts=(a.vpc_host_ip,), description=f"AWS tunnel {t.name} endpoint")

    def create_links(self, wan_ns: str, vpc_ns: str) -> None:
        """Namespace wiring: `wan` to the wan bridge, `vpc` to the VPC bridge."""
        t = self.tunnel
        vpc = ipaddress.ip_network(self.aws.vpc_cidr)
        run(["ip", "link", "add", "wan", "netns", self.ns, "type", "veth", "peer", "name",
             f"to-{self.short}", "netns", wan_ns])
        run(["ip", "link", "add", "vpc", "netns", self.ns, "type", "veth", "peer", "name",
             self.short, "netns", vpc_ns])
        ip_batch(wan_ns, [f"link set to-{self.short} master pub", f"link set to-{self.short} up"])
        ip_batch(vpc_ns, [f"link set {self.short} master br0", f"link set {self.short} up"])
        gw = str(ipaddress.ip_interface(self.lab.peer_gateway).ip)
        ip_batch(self.ns, [f"addr add {t.outside_ip}/24 dev wan", "link set wan up",
                           f"addr add {t.vpc_lan_ip}/{vpc.prefixlen} dev vpc", "link set vpc up",
                           f"route add default via {gw} dev wan"])
        nft_apply(self.ns, no_pmtud_rules())

    def start(self) -> None:
        """Writes configs, starts charon and BIRD, loads the connection."""
        self.charon.write_config(
            render_strongswan_conf(self.rundir, role=f"AWS tunnel {self.tunnel.name}",
                                   retransmission=AWS_RETRANSMISSION),
            render_swanctl_conf([self.conn_spec()]),
            render_updown(self.rundir, inside_cidr_address=self.inside_address))
        self.bird.write_config(birdmod.render_tunnel_endpoint(self.rundir, self.bgp_spec()))
        self.charon.start()
        self.bird.start()
        if not self._conn_unloaded():
            self.charon.load()

    def stop(self) -> None:
        self.charon.stop()
        self.bird.stop()

    def restart(self) -> None:
        """kill -9 charon (the peer crashes: nothing is sent) and start it again."""
        self.charon.stop(hard=True)
        self.charon.start()
        if not self._conn_unloaded():
            self.charon.load()

    def status(self) -> dict:
        st = {
            "namespace": self.ns, "outside_ip": self.tunnel.outside_ip,
            "customer_outside_ip": self.tunnel.customer_outside_ip,
            "inside_cidr": self.tunnel.inside_cidr, "failure": self.failure(),
            "ike": self.ike_status(),
        }
        d = self.bird.daemon()
        protos = self.bird.protocols() if d and d.alive() else {}
        tun = protos.get("tunnel")
        st["bgp"] = {
            "bird_pid": d.pid if d else None, "bird_alive": bool(d and d.alive()),
            "state": tun["info"] if tun else "DOWN",
            "established": bool(tun and tun["info"].startswith("Established")),
            "since": tun["since"] if tun else None,
            "vpc_host_session": protos.get("lan0", {}).get("info"),
        }
        if tun:
            st["bgp"].update(self.bird.bgp_detail("tunnel"))
        st["logs"] = {"charon": str(self.charon.log), "bird": str(self.bird.log),
                      "updown": str(self.rundir / "updown.log"), "dir": str(self.rundir)}
        return st


class PolicyPeer(_Endpoint):
    """A policy-based peer with explicit subnets. See module docstring."""

    conn_name = "site"

    def __init__(self, lab: LabConfig, cfg: PolicyPeerConfig) -> None:
        self.lab = lab
        self.cfg = cfg
        super().__init__(f"{lab.prefix}-{cfg.name}", Path(lab.state_dir) / cfg.name)

    @property
    def host_namespaces(self) -> list[str]:
        """One host namespace per local subnet: `<p>-<name>1`, `<p>-<name>2`, ..."""
        return [f"{self.ns}{i + 1}" for i in range(len(self.cfg.local_subnets))]

    def host_addresses(self) -> list[str]:
        """The hosts' addresses (.10 of each local subnet)."""
        return [str(ipaddress.ip_network(s).network_address + 10) for s in self.cfg.local_subnets]

    def child_specs(self) -> list[ChildSpec]:
        c = self.cfg
        rekey, rand = _rekey(c.esp_lifetime, 540 if c.esp_lifetime > 1080 else c.esp_lifetime // 4, 100)
        common = dict(esp_proposals=c.esp_proposal, life_time=c.esp_lifetime, rekey_time=rekey,
                      rand_time=rand, dpd_action="restart" if c.dpd else "clear",
                      start_action="start" if c.initiate else "none",
                      close_action="start" if c.initiate else "none",
                      updown=str(self.rundir / "updown.sh"))
        if not c.split_connections:
            return [ChildSpec(name="all", local_ts=list(c.local_subnets),
                              remote_ts=list(c.remote_subnets), **common)]
        return [ChildSpec(name=f"l{li}r{ri}", local_ts=[ls], remote_ts=[rs], **common)
                for li, ls in enumerate(c.local_subnets) for ri, rs in enumerate(c.remote_subnets)]

    def conn_spec(self) -> ConnSpec:
        c = self.cfg
        rekey, rand = _rekey(c.ike_lifetime, 540 if c.ike_lifetime > 1080 else c.ike_lifetime // 4, 100)
        return ConnSpec(
            name=self.conn_name, version=c.swanctl_version, local_addr=c.outside_ip,
            remote_addr=c.customer_outside_ip, proposals=c.ike_proposal, psk=c.psk or "",
            ike_life_time=c.ike_lifetime, ike_rekey_time=rekey, ike_rand_time=rand,
            dpd_delay=c.dpd_delay if c.dpd else 0, dpd_timeout=c.dpd_timeout,
            keyingtries=0 if c.initiate else 1, children=self.child_specs())

    def create_links(self, wan_ns: str) -> None:
        c = self.cfg
        run(["ip", "link", "add", "wan", "netns", self.ns, "type", "veth", "peer", "name",
             f"to-{c.name}", "netns", wan_ns])
        ip_batch(wan_ns, [f"link set to-{c.name} master pub", f"link set to-{c.name} up"])
        gw = str(ipaddress.ip_interface(self.lab.peer_gateway).ip)
        ip_batch(self.ns, [f"addr add {c.outside_ip}/24 dev wan", "link set wan up",
                           f"route add default via {gw} dev wan"])
        for i, (subnet, host_ns) in enumerate(zip(c.local_subnets, self.host_namespaces)):
            net = ipaddress.ip_network(subnet)
            router, host = net.network_address + 1, net.network_address + 10
            run(["ip", "link", "add", f"l{i}", "netns", self.ns, "type", "veth", "peer", "name",
                 "lan", "netns", host_ns])
            ip_batch(self.ns, [f"addr add {router}/{net.prefixlen} dev l{i}", f"link set l{i} up"])
            ip_batch(host_ns, [f"addr add {host}/{net.prefixlen} dev lan", "link set lan up",
                               f"route add default via {router} dev lan"])
        nft_apply(self.ns, mss_clamp_rules())

    def _add_tunnel_routes(self) -> None:
        # A policy-based firewall: traffic to the remote subnets always enters the
        # TUN; with no matching CHILD_SA libipsec drops it (nothing leaks in clear).
        ip_batch(self.ns, [f"route replace {r} dev {TUN}" for r in self.cfg.remote_subnets])

    def start(self) -> None:
        self.charon.write_config(
            render_strongswan_conf(self.rundir, role=f"policy peer {self.cfg.name}",
                                   retransmission=CLOUDSTACK_RETRANSMISSION),
            render_swanctl_conf([self.conn_spec()]),
            render_updown(self.rundir, inside_cidr_address=None))
        self.charon.start()
        self._add_tunnel_routes()
        if not self._conn_unloaded():
            self.charon.load()

    def stop(self) -> None:
        self.charon.stop()

    def restart(self) -> None:
        self.charon.stop(hard=True)
        self.charon.start()
        self._add_tunnel_routes()
        if not self._conn_unloaded():
            self.charon.load()

    def status(self) -> dict:
        c = self.cfg
        return {
            "namespace": self.ns, "outside_ip": c.outside_ip,
            "customer_outside_ip": c.customer_outside_ip, "failure": self.failure(),
            "local_subnets": c.local_subnets, "remote_subnets": c.remote_subnets,
            "split_connections": c.split_connections,
            "expected_children": [ch.name for ch in self.child_specs()],
            "hosts": dict(zip(self.host_namespaces, self.host_addresses())),
            "ike": self.ike_status(),
            "logs": {"charon": str(self.charon.log), "updown": str(self.rundir / "updown.log"),
                     "dir": str(self.rundir)},
        }
