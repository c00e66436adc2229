#!/usr/bin/env python3
"""labctl: command-line control of the Warren VPN test lab (see Docs/lab.md).

    labctl.py up            [--prefix P] [--json-config FILE]   build (after cleaning leftovers)
    labctl.py down          [--prefix P] [--json-config FILE]   remove everything (idempotent)
    labctl.py status        [--prefix P]                        JSON: IKE/CHILD/BGP per tunnel
    labctl.py wait          [NAME ...] [--timeout S]            until tunnels/peers are healthy
    labctl.py fail-tunnel   NAME [--mode silent|clean]          peer outage / IKE delete
    labctl.py heal-tunnel   NAME
    labctl.py restart-peer  NAME                                kill -9 charon, start again
    labctl.py vpc-ping      TARGET [--count N]                  ping from the VPC host
    labctl.py ping          NS TARGET [--count N]               ping from any lab namespace
    labctl.py exec          NS -- CMD ...                       run a command in a lab namespace
    labctl.py customer-config                                   what the customer side must configure
                                                                (contains the PSKs)

NAME is an AWS tunnel ("A", "B") or a policy peer ("cs"). Output is JSON on stdout;
errors go to stderr as `labctl: error: ...` with exit status 1. The lab's state
(config with PSKs, pid records, logs) lives in /tmp/<prefix>-lab/ unless the JSON
config sets log_dir; later commands find the lab through it.

Design: a thin shell over warrenlab.Lab; no state of its own. Threading: none.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from warrenlab import Lab, LabConfig, LabError  # noqa: E402


def _config(args) -> LabConfig:
    cfg = LabConfig.from_json_file(args.json_config) if args.json_config else LabConfig()
    if args.prefix:
        cfg.prefix = args.prefix
    return cfg


def _existing_lab(args) -> Lab:
    cfg = _config(args)
    return Lab.load(cfg.prefix, cfg.log_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labctl.py", description="Warren VPN test lab")
    parser.add_argument("--prefix", help="namespace/interface prefix (default wlab)")
    parser.add_argument("--json-config", help="lab configuration (JSON, see Docs/lab.md)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up")
    sub.add_parser("down")
    sub.add_parser("status")
    p = sub.add_parser("wait")
    p.add_argument("names", nargs="*")
    p.add_argument("--timeout", type=float, default=30.0)
    p = sub.add_parser("fail-tunnel")
    p.add_argument("name")
    p.add_argument("--mode", choices=["silent", "clean"], default="silent")
    p = sub.add_parser("heal-tunnel")
    p.add_argument("name")
    p = sub.add_parser("restart-peer")
    p.add_argument("name")
    p = sub.add_parser("vpc-ping")
    p.add_argument("target")
    p.add_argument("--count", type=int, default=3)
    p = sub.add_parser("ping")
    p.add_argument("ns")
    p.add_argument("target")
    p.add_argument("--count", type=int, default=3)
    p = sub.add_parser("exec")
    p.add_argument("ns")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    sub.add_parser("customer-config")
    args = parser.parse_args(argv)

    if os.geteuid() != 0:
        print("labctl: error: must run as root (namespaces, charon, BIRD)", file=sys.stderr)
        return 1
    try:
        result: object
        if args.command == "up":
            lab = Lab(_config(args))
            result = lab.up()
            result["state_dir"] = str(lab.state_dir)
            result["namespaces"] = lab.namespaces()
        elif args.command == "down":
            cfg = _config(args)
            try:
                lab = Lab.load(cfg.prefix, cfg.log_dir)
            except LabError:
                lab = Lab(cfg)
            lab.down()
            result = {"down": True, "prefix": lab.prefix}
        elif args.command == "exec":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                raise LabError("exec needs a command after --")
            proc = _existing_lab(args).host_exec(args.ns, cmd)
            sys.stdout.write(proc.stdout)
            sys.stderr.write(proc.stderr)
            return proc.returncode
        else:
            lab = _existing_lab(args)
            if args.command == "status":
                result = lab.status()
            elif args.command == "wait":
                result = {"healthy_after_s": round(lab.wait_healthy(args.names or None, args.timeout), 3)}
            elif args.command == "fail-tunnel":
                lab.fail_tunnel(args.name, args.mode)
                result = {"failed": args.name, "mode": args.mode}
            elif args.command == "heal-tunnel":
                lab.heal_tunnel(args.name)
                result = {"healed": args.name}
            elif args.command == "restart-peer":
                lab.restart_peer(args.name)
                result = {"restarted": args.name}
            elif args.command == "vpc-ping":
                result = lab.vpc_ping(args.target, args.count)
            elif args.command == "ping":
                result = lab.ping(args.ns, args.target, args.count)
            elif args.command == "customer-config":
                result = lab.customer_description()
            else:  # pragma: no cover - argparse restricts commands
                raise LabError(f"unknown command {args.command}")
    except LabError as exc:
        print(f"labctl: error: {exc}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    if args.command == "vpc-ping" or args.command == "ping":
        return 0 if result["received"] > 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
