"""BIRD 2 for the lab: config rendering and control of one BIRD per namespace.

What it does: renders bird.conf for the three roles the lab (and its self-test)
needs — a tunnel endpoint doing eBGP over the tunnel's inside /30 (AWS side and
customer side), and a LAN host learning routes over iBGP from its gateways — and
starts/queries BIRD through its own control socket (`birdc -s`).

Recipe points (VPN-REFERENCE pitfalls 4 and 8, Docs/lab.md):
- every BGP session sets `connect delay time 1; connect retry time 2;
  error wait time 1, 5` (defaults are 5 s / 120 s / 60-300 s: far too slow);
- the tunnel session imports only real prefixes: never a default route, nothing
  in 169.254.0.0/16, nothing that contains either IKE endpoint's outside address
  (IKE would be routed into its own tunnel), nothing overlapping our own prefixes;
- only routes learned over the tunnel are exported to the kernel (`proto = "tunnel"`),
  the originated prefixes are `unreachable` statics that exist only inside BIRD;
- iBGP towards LAN hosts uses `direct` + `next hop self`, so hosts resolve the next
  hop on their LAN and withdraws propagate the moment the tunnel session drops.

Invariants: one BIRD per namespace, its socket/log/pid in its run directory; the
protocol named "tunnel" is always the eBGP session over the IPsec tunnel.
Threading: synchronous helpers, no shared state.
"""

from __future__ import annotations

import ipaddress
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from .errors import LabError
from .host import Daemon, run, wait_for

BIRD = "bird"
BIRDC = "birdc"

FAST_BGP_TIMERS = "connect delay time 1; connect retry time 2; error wait time 1, 5;"


def _contains(addr: str) -> str:
    """BIRD condition true when the route's prefix contains `addr`."""
    return f"{addr} ~ net"


def _overlaps(prefix: str) -> str:
    """BIRD condition true when the route's prefix overlaps `prefix`."""
    net = ipaddress.ip_network(prefix)
    return f"(net ~ [ {net}+ ] || {net.network_address} ~ net)"


def tunnel_import_filter(name: str, *, outside_addrs: list[str], own_prefixes: list[str]) -> str:
    """The import filter for the eBGP session over the tunnel (pitfall 8)."""
    lines = [
        f"filter {name} {{",
        "    if net.type != NET_IP4 then reject;",
        "    if net.len = 0 then reject;                     # never a default route",
        "    if net ~ [ 169.254.0.0/16+ ] then reject;       # never link-local / inside CIDRs",
    ]
    for a in outside_addrs:
        lines.append(f"    if {_contains(a)} then reject;        # IKE endpoint {a} must stay outside the tunnel")
    for p in own_prefixes:
        lines.append(f"    if {_overlaps(p)} then reject;   # our own prefix {p}")
    lines += ["    accept;", "}"]
    return "\n".join(lines)


@dataclass
class TunnelBgp:
    """eBGP over a tunnel's inside /30, plus optional iBGP to LAN hosts."""

    router_id: str
    local_inside_ip: str
    peer_inside_ip: str
    local_asn: int
    peer_asn: int
    hold_time: int
    keepalive_time: int
    originate: list[str]
    outside_addrs: list[str]
    med: int | None = None
    receive_limit: int | None = None
    lan_ip: str | None = None
    lan_hosts: tuple[str, ...] = ()
    lan_hold_time: int = 9
    lan_keepalive_time: int = 3
    description: str = ""


def render_tunnel_endpoint(rundir: Path, spec: TunnelBgp) -> str:
    """bird.conf for a tunnel endpoint (AWS endpoint or customer IPsec instance)."""
    statics = "\n".join(f"    route {p} unreachable;" for p in spec.originate)
    med = f"bgp_med = {spec.med}; " if spec.med is not None else ""
    limit = (f"\n        receive limit {spec.receive_limit} action restart;"
             if spec.receive_limit else "")
    out = [
        f"# warrenlab: {spec.description}. Generated; see Docs/lab.md.",
        f'log "{rundir}/bird.log" all;',
        f"router id {spec.router_id};",
        'timeformat protocol "%Y-%m-%dT%H:%M:%S";',
        "",
        "protocol device { scan time 1; }   # also wakes BIRD's loop: see Docs/lab.md (close latency)",
        "",
        "# only what was learned over the tunnel goes into the kernel",
        "protocol kernel kernel4 {",
        '    ipv4 { import none; export where proto = "tunnel"; };',
        "}",
        "",
        "# prefixes we announce; they exist only inside BIRD (never exported to the kernel)",
        "protocol static originate4 {",
        "    ipv4;",
        statics,
        "}",
        "",
        tunnel_import_filter("tunnel_in", outside_addrs=spec.outside_addrs,
                             own_prefixes=spec.originate),
        "",
        "protocol bgp tunnel {",
        f'    description "{spec.description}";',
        f"    local {spec.local_inside_ip} as {spec.local_asn};",
        f"    neighbor {spec.peer_inside_ip} as {spec.peer_asn};",
        f"    hold time {spec.hold_time}; keepalive time {spec.keepalive_time};",
        f"    {FAST_BGP_TIMERS}",
        "    debug { states, events };",
        "    ipv4 {",
        f"        import filter tunnel_in;{limit}",
        f'        export filter {{ if proto = "originate4" then {{ {med}accept; }} reject; }};',
        "    };",
        "}",
    ]
    for i, host in enumerate(spec.lan_hosts):
        out += [
            "",
            f"# LAN host {host} learns the tunnel's routes with us as next hop",
            f"protocol bgp lan{i} {{",
            f"    local {spec.lan_ip} as {spec.local_asn};",
            f"    neighbor {host} as {spec.local_asn};",
            "    direct;",
            f"    hold time {spec.lan_hold_time}; keepalive time {spec.lan_keepalive_time};",
            f"    {FAST_BGP_TIMERS}",
            "    debug { states, events };",
            '    ipv4 { import none; export where proto = "tunnel"; next hop self; };',
            "}",
        ]
    return "\n".join(out) + "\n"


def render_lan_host(rundir: Path, *, router_id: str, asn: int, gateways: list[tuple[str, str, int | None]],
                    hold_time: int = 9, keepalive_time: int = 3, description: str = "") -> str:
    """bird.conf for a LAN host learning routes from its gateways over iBGP.

    `gateways` is [(protocol name, gateway address, local_pref or None)]; a higher
    local_pref is preferred, None keeps BGP's own choice (e.g. by MED)."""
    out = [
        f"# warrenlab: {description}. Generated; see Docs/lab.md.",
        f'log "{rundir}/bird.log" all;',
        f"router id {router_id};",
        'timeformat protocol "%Y-%m-%dT%H:%M:%S";',
        "protocol device { scan time 1; }   # also wakes BIRD's loop: see Docs/lab.md (close latency)",
        "protocol kernel kernel4 {",
        "    ipv4 { import none; export all; };",
        "}",
    ]
    for name, gw, pref in gateways:
        imp = f"import filter {{ bgp_local_pref = {pref}; accept; }};" if pref is not None else "import all;"
        out += [
            f"protocol bgp {name} {{",
            f"    local as {asn};",
            f"    neighbor {gw} as {asn};",
            "    direct;",
            f"    hold time {hold_time}; keepalive time {keepalive_time};",
            f"    {FAST_BGP_TIMERS}",
            "    debug { states, events, routes };",
            f"    ipv4 {{ {imp} export none; }};",
            "}",
        ]
    return "\n".join(out) + "\n"


_PROTO_LINE = re.compile(r"^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*(.*)$")


class Bird:
    """One BIRD in namespace `namespace`, files in `rundir`."""

    def __init__(self, namespace: str, rundir: Path) -> None:
        self.namespace = namespace
        self.rundir = rundir
        self.conf = rundir / "bird.conf"
        self.socket = rundir / "bird.ctl"
        self.log = rundir / "bird.log"
        self.record = rundir / "bird.lab.json"

    def write_config(self, text: str) -> None:
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(text)
        proc = run([BIRD, "-p", "-c", str(self.conf)], check=False)
        if proc.returncode != 0:
            raise LabError(f"BIRD rejects {self.conf}: {proc.stderr.strip()}")

    def daemon(self) -> Daemon | None:
        return Daemon.load(self.record)

    def start(self, timeout: float = 10.0) -> Daemon:
        old = self.daemon()
        if old and old.alive():
            raise LabError(f"BIRD already runs in {self.namespace} (pid {old.pid})")
        try:
            self.socket.unlink()
        except FileNotFoundError:
            pass
        d = Daemon.spawn("bird", self.namespace,
                         [BIRD, "-f", "-c", str(self.conf), "-s", str(self.socket),
                          "-P", str(self.rundir / "bird.pid")],
                         log_path=self.rundir / "bird.stdout", record=self.record)

        def ready() -> bool:
            if not d.alive():
                raise LabError(f"BIRD in {self.namespace} died during start; see {self.log}")
            return self.socket.exists() and self.birdc(["show", "status"], check=False).returncode == 0

        wait_for(ready, timeout, 0.05, what=f"BIRD socket in {self.namespace}")
        return d

    def stop(self) -> None:
        d = self.daemon()
        if d:
            d.kill(signal.SIGTERM)

    def birdc(self, args: list[str], *, check: bool = True):
        return run([BIRDC, "-s", str(self.socket), *args], check=check, timeout=10)

    def protocols(self) -> dict[str, dict]:
        """`show protocols` as {name: {proto, state, since, info}}; {} if BIRD is down."""
        if not self.socket.exists():
            return {}
        proc = self.birdc(["show", "protocols"], check=False)
        if proc.returncode != 0:
            return {}
        out = {}
        for line in proc.stdout.splitlines():
            m = _PROTO_LINE.match(line)
            if not m or m.group(1) in ("BIRD", "Name"):
                continue
            name, proto, _table, state, since, info = m.groups()
            out[name] = {"proto": proto, "state": state, "since": since, "info": info.strip()}
        return out

    def bgp_detail(self, name: str) -> dict:
        """BGP state, last error and route counts of protocol `name`."""
        proc = self.birdc(["show", "protocols", "all", name], check=False)
        detail: dict = {"bgp_state": None, "last_error": None, "routes": None}
        for line in proc.stdout.splitlines():
            s = line.strip()
            if s.startswith("BGP state:"):
                detail["bgp_state"] = s.split(":", 1)[1].strip()
            elif s.startswith("Last error:"):
                detail["last_error"] = s.split(":", 1)[1].strip()
            elif s.startswith("Routes:"):
                detail["routes"] = s.split(":", 1)[1].strip()
        return detail

    def established(self, name: str) -> bool:
        p = self.protocols().get(name)
        return bool(p and p["info"].startswith("Established"))
