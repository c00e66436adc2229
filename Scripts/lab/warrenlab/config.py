"""Lab configuration: what the AWS-side and policy-based peers look like.

What it does: dataclasses with the lab's defaults (the topology of Docs/lab.md),
loading from / dumping to JSON, validation against the AWS Site-to-Site VPN and
CloudStack rules (VPN-REFERENCE.md §2, §3), PSK generation, and the conversion of
CloudStack policy strings (`aes128-sha1;modp1536`) to strongSwan proposals.

Invariants (checked by `LabConfig.validate`, errors name the field):
- prefix: 1-8 chars `[a-z][a-z0-9]*` (so `<prefix>-up` fits IFNAMSIZ and names stay
  unambiguous); every address is in 198.51.100.0/24 (peer side), 203.0.113.0/24
  (uplink side), 100.64.0.0/10 (LANs) or 169.254.0.0/16 (tunnel insides).
- AWS inside CIDRs are /30s in 169.254.0.0/16 and not reserved; PSKs are 8-64 chars of
  `[A-Za-z0-9._]` not starting with `0`; ASNs are in range.
- `resolve()` fills generated PSKs once; the resolved config is what the lab persists
  and what `customer_description()` hands out, so later CLI calls see the same keys.

Threading: plain values, no shared state.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

from .errors import LabError

PEER_SIDE = ipaddress.ip_network("198.51.100.0/24")
UPLINK_SIDE = ipaddress.ip_network("203.0.113.0/24")
LAN_SPACE = ipaddress.ip_network("100.64.0.0/10")
LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")
AWS_RESERVED_INSIDE = [ipaddress.ip_network(f"169.254.{i}.0/30") for i in range(6)] + [
    ipaddress.ip_network("169.254.169.252/30")]

AWS_IKE_ENCRYPTION = {"aes128", "aes256", "aes128gcm16", "aes256gcm16"}
AWS_INTEGRITY = {"sha1", "sha256", "sha384", "sha512"}
AWS_DH = {"modp1024", "modp2048", "modp3072", "modp4096", "modp6144", "modp8192",
          "ecp256", "ecp384", "ecp521", "modp1024s160", "modp2048s224", "modp2048s256",
          "modp1536"}

CLOUDSTACK_CIPHERS = {"3des", "aes128", "aes192", "aes256"}
CLOUDSTACK_HASHES = {"md5", "sha1", "sha256", "sha384", "sha512"}
CLOUDSTACK_DH = {"modp768", "modp1024", "modp1536", "modp2048", "modp3072", "modp4096",
                 "modp6144", "modp8192"}

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_PSK_RE = re.compile(r"^[A-Za-z0-9._]{8,64}$")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,7}$")
_PEER_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,5}$")


def generate_psk(length: int = 32) -> str:
    """A random PSK valid for AWS (and CloudStack): `[A-Za-z0-9._]`, not starting with 0."""
    alphabet = string.ascii_letters + string.digits + "._"
    first = secrets.choice(string.ascii_letters)
    return first + "".join(secrets.choice(alphabet) for _ in range(length - 1))


def cloudstack_to_strongswan(policy: str, *, field_name: str, dh_required: bool) -> str:
    """Converts a CloudStack policy (`cipher-hash[;dhgroup]`, e.g. `aes128-sha1;modp1536`)
    to a strongSwan proposal (`aes128-sha1-modp1536`).

    Raises `LabError` naming `field_name` when the cipher, hash or group is not one
    CloudStack accepts, or the group is missing where required (IKE).
    """
    text = policy.strip().lower()
    parts = text.split(";")
    if len(parts) > 2 or not parts[0]:
        raise LabError(f"{field_name}: expected 'cipher-hash[;dhgroup]', got {policy!r}")
    algs = parts[0].split("-")
    if len(algs) != 2:
        raise LabError(f"{field_name}: expected 'cipher-hash' before ';', got {parts[0]!r}")
    cipher, hsh = algs
    if cipher not in CLOUDSTACK_CIPHERS:
        raise LabError(f"{field_name}: cipher {cipher!r} not one of {sorted(CLOUDSTACK_CIPHERS)}")
    if hsh not in CLOUDSTACK_HASHES:
        raise LabError(f"{field_name}: hash {hsh!r} not one of {sorted(CLOUDSTACK_HASHES)}")
    group = parts[1] if len(parts) == 2 and parts[1] else None
    if group is None and dh_required:
        raise LabError(f"{field_name}: a DH group is required (e.g. {parts[0]};modp1536)")
    if group is not None and group not in CLOUDSTACK_DH:
        raise LabError(f"{field_name}: DH group {group!r} not one of {sorted(CLOUDSTACK_DH)}")
    return "-".join([cipher, hsh] + ([group] if group else []))


def _check_aws_proposal(proposal: str, field_name: str, *, phase2: bool) -> None:
    for prop in proposal.split(","):
        algs = prop.strip().lower().split("-")
        if len(algs) < 2:
            raise LabError(f"{field_name}: proposal {prop!r} needs encryption-integrity[-dh]")
        enc, rest = algs[0], algs[1:]
        if enc not in AWS_IKE_ENCRYPTION:
            raise LabError(f"{field_name}: encryption {enc!r} not offered by AWS "
                           f"({sorted(AWS_IKE_ENCRYPTION)})")
        for alg in rest:
            if alg not in AWS_INTEGRITY and alg not in AWS_DH and not (phase2 and alg == "modp1536"):
                raise LabError(f"{field_name}: algorithm {alg!r} not offered by AWS")


def _addr(value: str, field_name: str, *, within: ipaddress.IPv4Network) -> str:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError as exc:
        raise LabError(f"{field_name}: {value!r} is not an IPv4 address") from exc
    if addr.version != 4 or addr not in within:
        raise LabError(f"{field_name}: {value} must be inside {within}")
    return str(addr)


def _net(value: str, field_name: str, *, within: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise LabError(f"{field_name}: {value!r} is not a network address/prefix") from exc
    if net.version != 4 or not net.subnet_of(within):
        raise LabError(f"{field_name}: {value} must be inside {within}")
    return net


def _check_psk(psk: str | None, field_name: str) -> None:
    if psk is None:
        return
    if not _PSK_RE.match(psk) or psk.startswith("0"):
        # never echo the key itself
        raise LabError(f"{field_name}: PSK must be 8-64 characters of [A-Za-z0-9._] and "
                       f"must not start with '0'")


def _from_dict(cls, data: dict[str, Any], where: str):
    if not isinstance(data, dict):
        raise LabError(f"{where}: expected a JSON object")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise LabError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(names)}")
    return cls(**data)


@dataclass
class AwsTunnelConfig:
    """One AWS tunnel endpoint (namespace `<prefix>-aws<name lowercased>`)."""

    name: str
    outside_ip: str
    inside_cidr: str
    med: int
    vpc_lan_ip: str
    customer_outside_ip: str
    psk: str | None = None

    @property
    def aws_inside_ip(self) -> str:
        """Host .1 of the inside /30 (the AWS end)."""
        return str(ipaddress.ip_network(self.inside_cidr).network_address + 1)

    @property
    def customer_inside_ip(self) -> str:
        """Host .2 of the inside /30 (the customer end)."""
        return str(ipaddress.ip_network(self.inside_cidr).network_address + 2)


def _default_tunnels() -> list[AwsTunnelConfig]:
    return [
        AwsTunnelConfig("A", "198.51.100.10", "169.254.10.0/30", 100, "100.64.200.2", "203.0.113.10"),
        AwsTunnelConfig("B", "198.51.100.11", "169.254.11.0/30", 200, "100.64.200.3", "203.0.113.11"),
    ]


@dataclass
class AwsConfig:
    """The AWS side of a Site-to-Site VPN connection (two tunnels + VPC LAN)."""

    ike_version: int = 2
    ike_proposal: str = "aes128-sha1-modp1024"
    esp_proposal: str = "aes128-sha1-modp1024"
    initiate: bool = False
    asn: int = 64512
    customer_asn: int = 65000
    hold_time: int = 30
    keepalive_time: int = 10
    dpd_delay: int = 10
    dpd_timeout: int = 30
    dpd_action: str = "restart"
    ike_lifetime: int = 28800
    esp_lifetime: int = 3600
    rekey_margin: int = 270
    rekey_fuzz: int = 100
    vpc_cidr: str = "100.64.200.0/24"
    vpc_host_ip: str = "100.64.200.10"
    customer_prefix_limit: int = 100
    tunnels: list[AwsTunnelConfig] = field(default_factory=_default_tunnels)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "AwsConfig":
        data = dict(data)
        tunnels = data.pop("tunnels", None)
        cfg = _from_dict(AwsConfig, data, "aws")
        if tunnels is not None:
            if not isinstance(tunnels, list):
                raise LabError("aws.tunnels: expected a list")
            cfg.tunnels = [_from_dict(AwsTunnelConfig, t, f"aws.tunnels[{i}]")
                           for i, t in enumerate(tunnels)]
        return cfg

    def validate(self) -> None:
        if self.ike_version not in (1, 2):
            raise LabError(f"aws.ike_version: must be 1 (IKEv1 main mode) or 2, got {self.ike_version!r}")
        _check_aws_proposal(self.ike_proposal, "aws.ike_proposal", phase2=False)
        _check_aws_proposal(self.esp_proposal, "aws.esp_proposal", phase2=True)
        for fname, asn in (("aws.asn", self.asn), ("aws.customer_asn", self.customer_asn)):
            if not isinstance(asn, int) or not 1 <= asn <= 4294967294:
                raise LabError(f"{fname}: {asn!r} is not a valid ASN")
        if not (64512 <= self.asn <= 65534 or 4200000000 <= self.asn <= 4294967294 or self.asn == 7224):
            raise LabError(f"aws.asn: {self.asn} is not an AWS-side ASN (64512-65534, 4200000000-4294967294, 7224)")
        if not 1 <= self.customer_asn <= 2147483647:
            raise LabError(f"aws.customer_asn: {self.customer_asn} outside 1..2147483647")
        if self.customer_asn == self.asn:
            raise LabError("aws.customer_asn: must differ from aws.asn (eBGP)")
        if self.hold_time < 3 or self.keepalive_time < 1 or self.keepalive_time * 3 > self.hold_time:
            raise LabError(f"aws.hold_time/keepalive_time: need hold >= 3 and keepalive <= hold/3 "
                           f"(got {self.hold_time}/{self.keepalive_time})")
        if self.dpd_action not in ("clear", "none", "restart"):
            raise LabError(f"aws.dpd_action: {self.dpd_action!r} not one of clear|none|restart")
        if self.dpd_delay < 1 or self.dpd_timeout < 3 * self.dpd_delay:
            raise LabError("aws.dpd_timeout: must be at least 3 x dpd_delay")
        # AWS allows 900-28800 s (phase 1) and 900-3600 s (phase 2); shorter values are
        # accepted here so that rekey tests do not take an hour.
        if not 60 <= self.esp_lifetime < self.ike_lifetime <= 28800:
            raise LabError("aws.esp_lifetime/ike_lifetime: need 60 <= phase 2 < phase 1 <= 28800 s")
        if not 10 <= self.rekey_margin <= self.esp_lifetime // 2:
            raise LabError(f"aws.rekey_margin: must be 10..esp_lifetime/2, got {self.rekey_margin}")
        if not 0 <= self.rekey_fuzz <= 100:
            raise LabError("aws.rekey_fuzz: percent 0..100")
        vpc = _net(self.vpc_cidr, "aws.vpc_cidr", within=LAN_SPACE)
        _addr(self.vpc_host_ip, "aws.vpc_host_ip", within=vpc)
        if not 1 <= self.customer_prefix_limit <= 1000:
            raise LabError("aws.customer_prefix_limit: 1..1000")
        if not self.tunnels or len(self.tunnels) > 2:
            raise LabError("aws.tunnels: one or two tunnels")
        seen: set[str] = set()
        for i, t in enumerate(self.tunnels):
            where = f"aws.tunnels[{i}]"
            if not _NAME_RE.match(t.name) or t.name.lower() in seen:
                raise LabError(f"{where}.name: {t.name!r} must be a unique short name like 'A'")
            seen.add(t.name.lower())
            _addr(t.outside_ip, f"{where}.outside_ip", within=PEER_SIDE)
            _addr(t.customer_outside_ip, f"{where}.customer_outside_ip", within=UPLINK_SIDE)
            _addr(t.vpc_lan_ip, f"{where}.vpc_lan_ip", within=vpc)
            inside = _net(t.inside_cidr, f"{where}.inside_cidr", within=LINK_LOCAL)
            if inside.prefixlen != 30:
                raise LabError(f"{where}.inside_cidr: {t.inside_cidr} must be a /30")
            if any(inside.overlaps(r) for r in AWS_RESERVED_INSIDE):
                raise LabError(f"{where}.inside_cidr: {t.inside_cidr} is reserved by AWS")
            if not 0 <= t.med <= 4294967295:
                raise LabError(f"{where}.med: out of range")
            _check_psk(t.psk, f"{where}.psk")

    def tunnel(self, name: str) -> AwsTunnelConfig:
        for t in self.tunnels:
            if t.name.lower() == name.lower():
                return t
        raise LabError(f"no AWS tunnel named {name!r} (have {[t.name for t in self.tunnels]})")


@dataclass
class PolicyPeerConfig:
    """A policy-based (CloudStack VPC router / on-prem firewall style) peer.

    Namespace `<prefix>-<name>`, hosts `<prefix>-<name>1`, `<prefix>-<name>2`, ...
    one per local subnet at `.10`. `remote_subnets` are the customer's subnets.
    """

    name: str = "cs"
    outside_ip: str = "198.51.100.20"
    customer_outside_ip: str = "203.0.113.20"
    local_subnets: list[str] = field(default_factory=lambda: ["100.64.210.0/24", "100.64.211.0/24"])
    remote_subnets: list[str] = field(default_factory=lambda: ["100.64.1.0/24"])
    psk: str | None = None
    ike_version: str = "ikev2"
    ike_policy: str = "aes128-sha1;modp1536"
    esp_policy: str = "aes128-sha1;modp1536"
    ike_lifetime: int = 86400
    esp_lifetime: int = 3600
    dpd: bool = True
    dpd_delay: int = 30
    dpd_timeout: int = 120
    split_connections: bool = True
    initiate: bool = False

    @property
    def ike_proposal(self) -> str:
        return cloudstack_to_strongswan(self.ike_policy, field_name=f"policy_peers.{self.name}.ike_policy",
                                        dh_required=True)

    @property
    def esp_proposal(self) -> str:
        return cloudstack_to_strongswan(self.esp_policy, field_name=f"policy_peers.{self.name}.esp_policy",
                                        dh_required=False)

    @property
    def swanctl_version(self) -> int:
        """0 = either (CloudStack `ike`), 1 or 2."""
        return {"ike": 0, "ikev1": 1, "ikev2": 2}[self.ike_version]

    def validate(self) -> None:
        where = f"policy_peers.{self.name}"
        if not _PEER_NAME_RE.match(self.name):
            raise LabError(f"{where}.name: {self.name!r} must match [a-z][a-z0-9-]{{0,5}}")
        _addr(self.outside_ip, f"{where}.outside_ip", within=PEER_SIDE)
        _addr(self.customer_outside_ip, f"{where}.customer_outside_ip", within=UPLINK_SIDE)
        if self.ike_version not in ("ike", "ikev1", "ikev2"):
            raise LabError(f"{where}.ike_version: {self.ike_version!r} not one of ike|ikev1|ikev2")
        _ = self.ike_proposal, self.esp_proposal
        if not 1 <= len(self.local_subnets) <= 9:
            raise LabError(f"{where}.local_subnets: 1..9 subnets")
        if not 1 <= len(self.remote_subnets) <= 10:
            raise LabError(f"{where}.remote_subnets: 1..10 subnets (CloudStack limit)")
        nets = []
        for i, s in enumerate(self.local_subnets):
            nets.append(_net(s, f"{where}.local_subnets[{i}]", within=LAN_SPACE))
        for i, s in enumerate(self.remote_subnets):
            nets.append(_net(s, f"{where}.remote_subnets[{i}]", within=LAN_SPACE))
        for i, a in enumerate(nets):
            for b in nets[i + 1:]:
                if a.overlaps(b):
                    raise LabError(f"{where}: subnets {a} and {b} overlap")
        for n in nets[:len(self.local_subnets)]:
            if n.num_addresses < 16:
                raise LabError(f"{where}.local_subnets: {n} too small for router .1 and host .10")
        if not 0 < self.esp_lifetime <= 86400 or not 0 < self.ike_lifetime <= 86400:
            raise LabError(f"{where}: lifetimes must be 1..86400 s")
        _check_psk(self.psk, f"{where}.psk")


@dataclass
class LabConfig:
    """Everything `Lab` builds. Defaults give the topology documented in Docs/lab.md."""

    prefix: str = "wlab"
    log_dir: str | None = None
    uplink: str | None = None
    uplink_gateway: str = "203.0.113.1/24"
    peer_gateway: str = "198.51.100.1/24"
    aws: AwsConfig | None = field(default_factory=AwsConfig)
    policy_peers: list[PolicyPeerConfig] = field(default_factory=lambda: [PolicyPeerConfig()])

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "LabConfig":
        data = dict(data)
        aws = data.pop("aws", "default")
        peers = data.pop("policy_peers", None)
        cfg = _from_dict(LabConfig, data, "lab config")
        if aws is None:
            cfg.aws = None
        elif aws != "default":
            cfg.aws = AwsConfig.from_dict(aws)
        if peers is not None:
            if not isinstance(peers, list):
                raise LabError("policy_peers: expected a list")
            cfg.policy_peers = [_from_dict(PolicyPeerConfig, p, f"policy_peers[{i}]")
                                for i, p in enumerate(peers)]
        return cfg

    @staticmethod
    def from_json_file(path: str) -> "LabConfig":
        try:
            with open(path, "r", encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError as exc:
            raise LabError(f"cannot read lab config {path}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise LabError(f"lab config {path} is not valid JSON: {exc}") from exc
        return LabConfig.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def state_dir(self) -> str:
        return self.log_dir or f"/tmp/{self.prefix}-lab"

    @property
    def uplink_name(self) -> str:
        return self.uplink or f"{self.prefix}-up"

    def validate(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise LabError(f"prefix: {self.prefix!r} must match [a-z][a-z0-9]{{0,7}}")
        if not self.uplink_name.startswith(self.prefix + "-") or len(self.uplink_name) > 15:
            raise LabError(f"uplink: {self.uplink_name!r} must start with '{self.prefix}-' and be <= 15 chars")
        gw = ipaddress.ip_interface(self.uplink_gateway)
        if gw.network != UPLINK_SIDE:
            raise LabError(f"uplink_gateway: {self.uplink_gateway} must be an address/24 in {UPLINK_SIDE}")
        pgw = ipaddress.ip_interface(self.peer_gateway)
        if pgw.network != PEER_SIDE:
            raise LabError(f"peer_gateway: {self.peer_gateway} must be an address/24 in {PEER_SIDE}")
        outside: dict[str, str] = {}

        def claim(ip: str, who: str) -> None:
            if ip in outside:
                raise LabError(f"{who}: address {ip} already used by {outside[ip]}")
            outside[ip] = who

        claim(str(pgw.ip), "peer_gateway")
        if self.aws is not None:
            self.aws.validate()
            for t in self.aws.tunnels:
                claim(t.outside_ip, f"aws tunnel {t.name}")
        names = set()
        for p in self.policy_peers:
            p.validate()
            if p.name in names or p.name in ("wan", "vpc", "host") or p.name.startswith("aws"):
                raise LabError(f"policy_peers.{p.name}: name clashes with another lab namespace")
            names.add(p.name)
            claim(p.outside_ip, f"policy peer {p.name}")

    def resolve(self) -> "LabConfig":
        """Validates and returns a copy with generated PSKs filled in."""
        self.validate()
        cfg = LabConfig.from_dict(json.loads(json.dumps(self.to_dict())))
        if cfg.aws is not None:
            for t in cfg.aws.tunnels:
                if t.psk is None:
                    t.psk = generate_psk()
        for p in cfg.policy_peers:
            if p.psk is None:
                p.psk = generate_psk()
        return cfg

    def policy_peer(self, name: str) -> PolicyPeerConfig:
        for p in self.policy_peers:
            if p.name == name:
                return p
        raise LabError(f"no policy peer named {name!r} (have {[p.name for p in self.policy_peers]})")
