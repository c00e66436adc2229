#!/usr/bin/env python3
"""bench_vpn.py: the peer side of `warren-bench vpn` (Benchmarks/WarrenBench/VPNBench.swift).

    bench_vpn.py up    --prefix P [--hold S --keepalive S] [--ike-version 1|2] [--pairs N] [--policy-peer]
    bench_vpn.py down  --prefix P
    bench_vpn.py wait  --prefix P --state settled|idle [--timeout S] NAME ...

`up` builds the lab of Scripts/lab (prefix P, uplink `P-up`): the AWS-side pair A/B, the
VPC host, optionally the CloudStack-style policy peer `cs`, and N-1 *extra* AWS endpoint
pairs for the 20-VPN measurement. The lab's AWS endpoint is one charon + one BIRD per
namespace with one connection (libipsec has one TUN per charon, and every AWS tunnel's
selectors are 0.0.0.0/0, so one charon cannot serve several customers' tunnels); an extra
pair is therefore two more endpoint namespaces `P-awsaNN` / `P-awsbNN` built with the lab's
own `AwsPeer` class (same charon/BIRD configuration, same timers), wired to the lab's
"Internet" bridge and VPC bridge. Pair k (k >= 1):

    AWS outside IP   A 198.51.100.(100+k)   B 198.51.100.(150+k)
    customer (Warren) outside IP  A 203.0.113.(100+k)  B 203.0.113.(150+k)
    inside /30       A 169.254.(100+k).0/30 B 169.254.(150+k).0/30
    VPC LAN address  A 100.64.200.(100+k)   B 100.64.200.(150+k)

The VPC host's BIRD is reconfigured with an iBGP session to every endpoint (A preferred),
so traffic from every VPN's tenant subnet gets an answer. `up` prints one JSON document
(stdout) describing every pair and peer — it contains the PSKs: the caller must not log it.

`down` removes the extras (daemons by their pid records, then their namespaces) and the lab.
`wait` polls the lab until every NAME (A, B, A01, ..., cs) is `settled` (one idle IKE SA,
CHILD_SA installed, BGP Established on the peer side) or `idle` (no IKE SA and no BGP
session: what a deleted VPN must leave behind); prints {"seconds": waited}.

Errors go to stderr as `bench_vpn: error: ...` with exit status 1. Runs as root.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Scripts" / "lab"))

from warrenlab import Lab, LabConfig, LabError  # noqa: E402
from warrenlab import bird as birdmod  # noqa: E402
from warrenlab.config import AwsConfig, AwsTunnelConfig, generate_psk  # noqa: E402
from warrenlab.host import Daemon, create_namespace, delete_namespace, run  # noqa: E402
from warrenlab.peers import AwsPeer  # noqa: E402

EXTRAS_FILE = "bench-extras.json"
MAX_PAIRS = 49


def lab_config(args) -> LabConfig:
    cfg = {
        "prefix": args.prefix,
        "aws": {
            "ike_version": args.ike_version, "hold_time": args.hold, "keepalive_time": args.keepalive,
            "customer_asn": 65000,
            "tunnels": [
                {"name": "A", "outside_ip": "198.51.100.10", "inside_cidr": "169.254.10.0/30", "med": 100,
                 "vpc_lan_ip": "100.64.200.2", "customer_outside_ip": "203.0.113.10"},
                {"name": "B", "outside_ip": "198.51.100.11", "inside_cidr": "169.254.11.0/30", "med": 200,
                 "vpc_lan_ip": "100.64.200.3", "customer_outside_ip": "203.0.113.11"},
            ]},
        "policy_peers": [{"name": "cs", "remote_subnets": ["100.64.1.0/24"], "ike_version": "ikev2",
                          "ike_policy": "aes128-sha1;modp1536", "esp_policy": "aes128-sha1;modp1536",
                          "customer_outside_ip": "203.0.113.20"}] if args.policy_peer else [],
    }
    return LabConfig.from_dict(cfg)


def extra_tunnels(k: int) -> list[AwsTunnelConfig]:
    """Pair k's two tunnels (k = 1 .. MAX_PAIRS), PSKs generated."""
    return [
        AwsTunnelConfig(f"A{k:02d}", f"198.51.100.{100 + k}", f"169.254.{100 + k}.0/30", 100,
                        f"100.64.200.{100 + k}", f"203.0.113.{100 + k}", generate_psk()),
        AwsTunnelConfig(f"B{k:02d}", f"198.51.100.{150 + k}", f"169.254.{150 + k}.0/30", 200,
                        f"100.64.200.{150 + k}", f"203.0.113.{150 + k}", generate_psk()),
    ]


def pair_config(lab: Lab, k: int) -> LabConfig:
    """A copy of the lab's configuration whose AWS section holds pair k only (validated
    by the lab's own rules: addresses, /30s, PSKs, timers)."""
    data = json.loads(json.dumps(lab.config.to_dict()))
    data["policy_peers"] = []
    cfg = LabConfig.from_dict(data)
    cfg.aws.tunnels = extra_tunnels(k)
    cfg.validate()
    return cfg


def extra_peers(lab: Lab, pairs: int) -> list[AwsPeer]:
    out = []
    for k in range(1, pairs):
        cfg = pair_config(lab, k)
        out += [AwsPeer(cfg, t) for t in cfg.aws.tunnels]
    return out


def tunnel_desc(t: AwsTunnelConfig) -> dict:
    return {"name": t.name, "aws_outside_ip": t.outside_ip, "customer_outside_ip": t.customer_outside_ip,
            "psk": t.psk, "inside_cidr": t.inside_cidr, "customer_inside_ip": t.customer_inside_ip,
            "aws_inside_ip": t.aws_inside_ip}


def reconfigure_vpc_host(lab: Lab, peers: list[AwsPeer]) -> None:
    """The VPC host's BIRD with an iBGP session to every endpoint; A-side preferred."""
    a = lab.config.aws
    gateways = [(p.short, p.tunnel.vpc_lan_ip, 200 if p.tunnel.name.upper().startswith("A") else 100) for p in peers]
    lab.host_bird.write_config(birdmod.render_lan_host(
        lab.host_bird.rundir, router_id=a.vpc_host_ip, asn=a.asn, gateways=gateways,
        description="VPC host (warren-bench vpn: every endpoint pair)"))
    proc = lab.host_bird.birdc(["configure"], check=False)
    if proc.returncode != 0 or "Reconfigured" not in proc.stdout:
        raise LabError(f"VPC host BIRD did not take the new configuration: {proc.stdout.strip()[-300:]}")


def cmd_up(args) -> dict:
    if not 1 <= args.pairs <= MAX_PAIRS:
        raise LabError(f"--pairs: 1..{MAX_PAIRS}")
    cmd_down(args)
    lab = Lab(lab_config(args))
    t0 = time.monotonic()
    lab.up()
    extras: list[AwsPeer] = []
    try:
        extras = extra_peers(lab, args.pairs)
        # Record first, so `down` finds them even if building fails half-way.
        (lab.state_dir / EXTRAS_FILE).write_text(json.dumps([p.ns for p in extras]) + "\n")
        for p in extras:
            create_namespace(p.ns, forwarding=True)
            p.create_links(lab.wan_ns, lab.vpc_ns)
        for p in extras:
            p.start()
        if extras:
            reconfigure_vpc_host(lab, lab.aws_peers + extras)
    except BaseException:
        cmd_down(args)
        raise
    desc = lab.customer_description()
    main_pair = {t["name"]: t for t in desc["aws"]["tunnels"]}
    pairs = [{"A": main_pair["A"], "B": main_pair["B"]}]
    for i in range(0, len(extras), 2):
        pairs.append({"A": tunnel_desc(extras[i].tunnel), "B": tunnel_desc(extras[i + 1].tunnel)})
    desc["pairs"] = pairs
    desc["up_seconds"] = round(time.monotonic() - t0, 3)
    return desc


def cmd_down(args) -> dict:
    cfg = LabConfig()
    cfg.prefix = args.prefix
    state = Path(cfg.state_dir)
    recorded: list[str] = []
    try:
        recorded = [n for n in json.loads((state / EXTRAS_FILE).read_text())
                    if isinstance(n, str) and n.startswith(args.prefix + "-aws")]
    except (OSError, ValueError):
        pass
    for ns in recorded:
        short = ns[len(args.prefix) + 1:]
        for record in sorted((state / short).glob("*.lab.json")) if (state / short).is_dir() else []:
            d = Daemon.load(record)
            if d and d.namespace == ns:
                d.kill()
        delete_namespace(ns)
    try:
        lab = Lab.load(args.prefix)
    except LabError:
        lab = Lab(cfg)
    lab.down()
    (state / EXTRAS_FILE).unlink(missing_ok=True)
    return {"down": True, "prefix": args.prefix, "extras_removed": len(recorded)}


def find_peer(lab: Lab, name: str):
    try:
        return lab.peer(name)
    except LabError:
        pass
    m = name.upper()
    if len(m) == 3 and m[0] in "AB" and m[1:].isdigit():
        k = int(m[1:])
        cfg = pair_config(lab, k)
        # PSKs do not matter for status; the namespace and run directory are what count.
        return AwsPeer(cfg, cfg.aws.tunnels[0 if m[0] == "A" else 1])
    raise LabError(f"no tunnel or peer named {name!r}")


def peer_state(peer, want: str) -> bool:
    st = peer.status()
    ike = st["ike"]
    if isinstance(peer, AwsPeer):
        bgp_up = st["bgp"]["established"]
        if want == "idle":
            return ike.get("ike_sas", 0) == 0 and not bgp_up
        return (ike.get("ike_state") == "ESTABLISHED" and ike.get("ike_sas") == 1 and not ike.get("tasks")
                and ike.get("children_installed", 0) == 1 and bgp_up)
    if want == "idle":
        return ike.get("ike_sas", 0) == 0
    installed = {c["name"] for c in ike.get("children", []) if c["state"] == "INSTALLED"}
    return (ike.get("ike_state") == "ESTABLISHED" and ike.get("ike_sas") == 1 and not ike.get("tasks")
            and set(st["expected_children"]) <= installed)


def cmd_wait(args) -> dict:
    lab = Lab.load(args.prefix)
    peers = {n: find_peer(lab, n) for n in args.names}
    t0 = time.monotonic()
    while True:
        bad = [n for n, p in peers.items() if not peer_state(p, args.state)]
        if not bad:
            return {"seconds": round(time.monotonic() - t0, 3)}
        if time.monotonic() - t0 > args.timeout:
            raise LabError(f"lab peers {bad} not {args.state} after {args.timeout:.0f}s")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_vpn.py", description="peer side of warren-bench vpn")
    parser.add_argument("command", choices=["up", "down", "wait"])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--hold", type=int, default=30)
    parser.add_argument("--keepalive", type=int, default=10)
    parser.add_argument("--ike-version", type=int, default=2, choices=[1, 2])
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--policy-peer", action="store_true")
    parser.add_argument("--state", choices=["settled", "idle"], default="settled")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_intermixed_args(argv)
    if os.geteuid() != 0:
        print("bench_vpn: error: must run as root (namespaces, charon, BIRD)", file=sys.stderr)
        return 1
    if not args.prefix.isalnum() or not args.prefix[0].isalpha() or len(args.prefix) > 8:
        print("bench_vpn: error: --prefix: 1-8 letters/digits starting with a letter", file=sys.stderr)
        return 1
    try:
        result = {"up": cmd_up, "down": cmd_down, "wait": cmd_wait}[args.command](args)
    except LabError as exc:
        print(f"bench_vpn: error: {exc}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
