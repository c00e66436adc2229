"""strongSwan for the lab: config rendering and control of one charon per namespace.

What it does: renders strongswan.conf / swanctl.conf / the updown script for one
IPsec endpoint, starts charon inside its namespace, and drives it with `swanctl`
over that charon's own vici socket (`--uri`, `--file`; VPN-REFERENCE pitfall 1).

The recipe (VPN-REFERENCE §1, proven on these kernels; see Docs/lab.md):
- explicit plugin list with kernel-libipsec (ESP in userspace over TUN `ipsec0`,
  always UDP-encapsulated) before kernel-netlink (addresses/routes);
- charon runs in a private mount namespace with its run directory bind-mounted on
  /run, so its compiled-in /run/charon.pid and sockets never clash (pitfall 1);
- `routing_table`/`routing_table_prio` point at a private table reached only through
  an fwmark nothing sets, so libipsec's `0.0.0.0/0 dev ipsec0` route never swallows
  IKE or BGP (pitfall 2); one charon per namespace (pitfall 3);
- `roam_events = no`: route churn from BIRD must not make charon re-evaluate paths;
- the updown script keeps the tunnel's inside address on `ipsec0` only while at
  least one CHILD_SA is installed (a counter under flock), so a deleted or dead
  tunnel makes BIRD lose its neighbour at once instead of waiting for hold time
  (pitfall 7). It never sets the TUN down: libipsec must be able to install its
  route on the TUN when the next CHILD_SA comes up.
- PSKs are written base64-encoded (`0s…`) to a 0600 file and never logged.

Invariants: one `Charon` object per run directory; `swanctl` calls carry `--uri`
of this charon only. Threading: synchronous; safe to call from several threads as
long as they do not start/stop the same charon concurrently.
"""

from __future__ import annotations

import base64
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LabError
from .host import Daemon, ns_run, run, wait_for

CHARON = "/usr/lib/ipsec/charon"
SWANCTL = "swanctl"
TUN = "ipsec0"
#: The plugin list that works on kernels without kernel ESP (order matters:
#: kernel-libipsec must register its kernel-ipsec backend before kernel-netlink).
PLUGINS = ("random nonce openssl pem pkcs1 x509 revocation constraints pubkey kdf aes sha1 sha2 "
           "hmac gmp kernel-libipsec kernel-netlink socket-default updown vici")
#: Private routing table for libipsec's routes, and the fwmark that would select it.
PRIVATE_TABLE = 210
UNUSED_FWMARK = "0x5742"


@dataclass
class Retransmission:
    """charon's IKE retransmission schedule. For IKEv2 this is also the DPD timeout:
    a peer is declared dead after timeout * (1 + base + ... + base^tries)."""

    timeout: float
    base: float
    tries: int

    def total(self) -> float:
        return sum(self.timeout * self.base ** i for i in range(self.tries + 1))


#: AWS's DPD is 10 s x 3 (timeout 30 s): retransmit every 10 s, give up after 30 s.
AWS_RETRANSMISSION = Retransmission(10.0, 1.0, 2)
#: The customer side used in the self-test: 2, 3, 4.5, 6.75 s (about 16 s in total).
CUSTOMER_RETRANSMISSION = Retransmission(2.0, 1.5, 3)


def render_strongswan_conf(rundir: Path, *, role: str, retransmission: Retransmission) -> str:
    """strongswan.conf for one charon whose run directory is `rundir`."""
    r = retransmission
    return f"""# warrenlab: {role}. Generated; see Docs/lab.md for why each line is here.
charon {{
    load = {PLUGINS}
    # one charon per namespace; its own vici socket and pid file (/run is bind-mounted)
    install_virtual_ip = no
    # libipsec installs 0.0.0.0/0 dev {TUN} whatever install_routes says: keep it in a
    # private table that only an fwmark nobody sets would select
    routing_table = {PRIVATE_TABLE}
    routing_table_prio = {PRIVATE_TABLE}
    retransmit_timeout = {r.timeout}
    retransmit_base = {r.base}
    retransmit_tries = {r.tries}
    make_before_break = yes
    plugins {{
        kernel-netlink {{
            fwmark = {UNUSED_FWMARK}
            roam_events = no
        }}
        vici {{
            socket = unix://{rundir}/charon.vici
        }}
    }}
    filelog {{
        lab {{
            path = {rundir}/charon.log
            time_format = %Y-%m-%d %H:%M:%S
            ike_name = yes
            append = yes
            flush_line = yes
            default = 1
            ike = 2
            knl = 1
            cfg = 1
        }}
    }}
    syslog {{
        daemon {{
            default = -1
        }}
    }}
}}
"""


@dataclass
class ChildSpec:
    """One CHILD_SA definition (swanctl.conf `children.<name>`)."""

    name: str
    local_ts: list[str]
    remote_ts: list[str]
    esp_proposals: str
    life_time: int
    rekey_time: int
    rand_time: int
    dpd_action: str = "restart"
    start_action: str = "none"
    close_action: str = "none"
    updown: str | None = None


@dataclass
class ConnSpec:
    """One IKE connection (swanctl.conf `connections.<name>`) with PSK auth by IP id."""

    name: str
    version: int
    local_addr: str
    remote_addr: str
    proposals: str
    psk: str
    ike_life_time: int
    ike_rekey_time: int
    ike_rand_time: int
    dpd_delay: int
    dpd_timeout: int
    keyingtries: int = 1
    unique: str = "no"
    children: list[ChildSpec] = field(default_factory=list)


def _lines_child(c: ChildSpec) -> list[str]:
    lines = [
        f"            {c.name} {{",
        f"                local_ts = {','.join(c.local_ts)}",
        f"                remote_ts = {','.join(c.remote_ts)}",
        f"                esp_proposals = {c.esp_proposals}",
        f"                life_time = {c.life_time}s",
        f"                rekey_time = {c.rekey_time}s",
        f"                rand_time = {c.rand_time}s",
        f"                dpd_action = {c.dpd_action}",
        f"                start_action = {c.start_action}",
        f"                close_action = {c.close_action}",
        "                mode = tunnel",
    ]
    if c.updown:
        lines.append(f"                updown = {c.updown}")
    lines.append("            }")
    return lines


def render_swanctl_conf(conns: list[ConnSpec], *, with_secrets: bool = True) -> str:
    """swanctl.conf with the given connections and (unless disabled) their PSKs."""
    out = ["# warrenlab: generated; PSKs are base64 (0s...) and this file is mode 0600",
           "connections {"]
    for c in conns:
        out += [
            f"    {c.name} {{",
            f"        version = {c.version}",
            f"        local_addrs = {c.local_addr}",
            f"        remote_addrs = {c.remote_addr}",
            f"        proposals = {c.proposals}",
            f"        dpd_delay = {c.dpd_delay}s",
            f"        dpd_timeout = {c.dpd_timeout}s",
            f"        keyingtries = {c.keyingtries}",
            f"        unique = {c.unique}",
            "        mobike = no",
            "        encap = yes",
        ]
        if c.version == 1:
            # IKEv1 cannot rekey an ISAKMP SA in place: charon reauthenticates
            out += [f"        reauth_time = {c.ike_rekey_time}s", "        rekey_time = 0s"]
        else:
            out += [f"        rekey_time = {c.ike_rekey_time}s", "        reauth_time = 0s"]
        out += [
            f"        over_time = {max(c.ike_life_time - c.ike_rekey_time, 1)}s",
            f"        rand_time = {c.ike_rand_time}s",
            "        local {",
            "            auth = psk",
            f"            id = {c.local_addr}",
            "        }",
            "        remote {",
            "            auth = psk",
            f"            id = {c.remote_addr}",
            "        }",
            "        children {",
        ]
        for ch in c.children:
            out += _lines_child(ch)
        out += ["        }", "    }"]
    out.append("}")
    if with_secrets:
        out.append("secrets {")
        for c in conns:
            b64 = base64.b64encode(c.psk.encode()).decode()
            out += [f"    ike-{c.name} {{", f"        id-local = {c.local_addr}",
                    f"        id-remote = {c.remote_addr}", f"        secret = 0s{b64}", "    }"]
        out.append("}")
    return "\n".join(out) + "\n"


def render_updown(rundir: Path, *, inside_cidr_address: str | None) -> str:
    """The updown script. With `inside_cidr_address` (e.g. "169.254.10.1/30") it keeps
    that address on the TUN only while >= 1 CHILD_SA is installed (pitfall 7);
    without it, it only logs."""
    action_up = action_down = ":"
    if inside_cidr_address:
        action_up = f"ip addr replace {inside_cidr_address} dev {TUN}"
        action_down = f"ip addr flush dev {TUN}"
    return f"""#!/bin/sh
# warrenlab updown (generated). Runs inside charon's namespaces for each CHILD_SA
# that is installed (up-*) or removed (down-*); rekeys do not call it. It counts
# installed CHILD_SAs under a lock so that a duplicate SA going away does not take
# the inside address off a tunnel that still works.
exec 9>"{rundir}/updown.lock"
flock 9
n=$(cat "{rundir}/updown.count" 2>/dev/null || echo 0)
case "$PLUTO_VERB" in
    up-client|up-host)
        n=$((n + 1))
        {action_up}
        ;;
    down-client|down-host)
        n=$((n - 1))
        [ "$n" -lt 0 ] && n=0
        if [ "$n" -eq 0 ]; then
            {action_down}
        fi
        ;;
esac
echo "$n" > "{rundir}/updown.count"
echo "$(date '+%Y-%m-%d %H:%M:%S.%N') $PLUTO_VERB $PLUTO_CONNECTION $PLUTO_MY_CLIENT<->$PLUTO_PEER_CLIENT installed=$n" >> "{rundir}/updown.log"
exit 0
"""


# ---------------------------------------------------------------------------
# swanctl --raw output parser
# ---------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\s*(?:(\})|(\])|([^\s={}\[\]]+)\s*(=|\{|\[))")
_VALUE_RE = re.compile(r"([^\s}\]]*)")
_ITEM_RE = re.compile(r"\s*(\]|[^\s\]]+)")


def parse_vici_raw(text: str) -> list[dict]:
    """Parses `swanctl ... --raw` output (one vici message per line, e.g.
    `list-sa event {A {uniqueid=1 state=ESTABLISHED child-sas {A-1 {state=INSTALLED}}}}`)
    into a list of dicts, one per message body. Values are strings; lists are lists.
    Raises `LabError` on malformed input."""
    messages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or "{" not in line:
            continue
        start = line.index("{")
        body, pos = _parse_section(line, start + 1)
        messages.append(body)
    return messages


def _parse_section(s: str, pos: int) -> tuple[dict, int]:
    out: dict = {}
    while True:
        m = _TOKEN_RE.match(s, pos)
        if not m:
            if s[pos:].strip() == "":
                return out, len(s)
            raise LabError(f"cannot parse swanctl output near: {s[pos:pos + 60]!r}")
        pos = m.end()
        if m.group(1):
            return out, pos
        key, kind = m.group(3), m.group(4)
        if kind == "=" and not s.startswith("[", pos):
            vm = _VALUE_RE.match(s, pos)
            out[key] = vm.group(1)
            pos = vm.end()
        elif kind == "{":
            out[key], pos = _parse_section(s, pos)
        else:  # list: `key [a b]` or `key=[a b]`
            if kind == "=":
                pos += 1
            items = []
            while True:
                lm = _ITEM_RE.match(s, pos)
                if not lm:
                    raise LabError("unterminated list in swanctl output")
                pos = lm.end()
                if lm.group(1) == "]":
                    break
                items.append(lm.group(1))
            out[key] = items


class Charon:
    """One charon in namespace `namespace`, run directory `rundir` (its /run)."""

    def __init__(self, namespace: str, rundir: Path) -> None:
        self.namespace = namespace
        self.rundir = rundir
        self.uri = f"unix://{rundir}/charon.vici"
        self.conf = rundir / "strongswan.conf"
        self.swanctl_conf = rundir / "swanctl.conf"
        self.empty_conf = rundir / "swanctl-empty.conf"
        self.updown = rundir / "updown.sh"
        self.log = rundir / "charon.log"
        self.record = rundir / "charon.lab.json"

    def write_config(self, strongswan_conf: str, swanctl_conf: str, updown: str) -> None:
        self.rundir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.rundir, 0o700)
        self.conf.write_text(strongswan_conf)
        fd = os.open(self.swanctl_conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(swanctl_conf)
        self.empty_conf.write_text("connections {\n}\n")
        self.updown.write_text(updown)
        os.chmod(self.updown, 0o755)

    def daemon(self) -> Daemon | None:
        return Daemon.load(self.record)

    def start(self, timeout: float = 15.0) -> Daemon:
        """Starts charon (private mount namespace, run dir on /run) and waits until
        its vici socket answers. Resets the updown counter (no CHILD_SA exists yet)."""
        old = self.daemon()
        if old and old.alive():
            raise LabError(f"charon already runs in {self.namespace} (pid {old.pid})")
        (self.rundir / "updown.count").write_text("0\n")
        for stale in ("charon.vici", "charon.pid"):
            try:
                (self.rundir / stale).unlink()
            except FileNotFoundError:
                pass
        script = ('mount --bind "$0" /run && exec env STRONGSWAN_CONF="$0/strongswan.conf" '
                  + CHARON)
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                str(self.rundir)]
        d = Daemon.spawn("charon", self.namespace, argv, log_path=self.rundir / "charon.stdout",
                         record=self.record)

        def ready() -> bool:
            if not d.alive():
                raise LabError(f"charon in {self.namespace} died during start; see {self.log} "
                               f"and {self.rundir / 'charon.stdout'}")
            return (self.rundir / "charon.vici").exists() and self.swanctl(
                ["--stats"], check=False).returncode == 0

        wait_for(ready, timeout, 0.05, what=f"charon vici socket in {self.namespace}")
        wait_for(lambda: ns_run(self.namespace, ["ip", "link", "show", TUN], check=False)
                 .returncode == 0, timeout, 0.05, what=f"{TUN} in {self.namespace}")
        return d

    def stop(self, *, hard: bool = False) -> None:
        """Stops charon: SIGTERM (charon deletes its SAs on the way out) or, with
        `hard`, SIGKILL (a crash: nothing is sent to the peer)."""
        d = self.daemon()
        if d:
            d.kill(signal.SIGKILL if hard else signal.SIGTERM)

    def swanctl(self, args: list[str], *, check: bool = True, timeout: float = 30.0):
        """Runs `swanctl <args> --uri <this charon>` from the root namespace."""
        return run([SWANCTL, *args, "--uri", self.uri], check=check, timeout=timeout)

    def load(self) -> None:
        """Loads connections and secrets from this charon's swanctl.conf."""
        self.swanctl(["--load-all", "--file", str(self.swanctl_conf)])

    def unload_connections(self) -> None:
        """Unloads every connection (existing SAs stay until terminated)."""
        self.swanctl(["--load-conns", "--file", str(self.empty_conf)])

    def initiate(self, child: str, ike: str, timeout: int = 20, check: bool = True):
        return self.swanctl(["--initiate", "--ike", ike, "--child", child, "--timeout",
                             str(timeout)], check=check, timeout=timeout + 5)

    def terminate_ike(self, ike: str, timeout: int = 10, check: bool = True):
        """Terminates IKE SAs of connection `ike` (sends an IKE DELETE)."""
        return self.swanctl(["--terminate", "--ike", ike, "--timeout", str(timeout)],
                            check=check, timeout=timeout + 5)

    def list_sas(self) -> list[dict]:
        """IKE SAs as parsed vici dicts: [{"name": conn, "state": ..., "child-sas": {...}}].
        Uses --noblock so a busy IKE SA never stalls the caller."""
        proc = self.swanctl(["--list-sas", "--noblock", "--raw"], timeout=10)
        sas = []
        for msg in parse_vici_raw(proc.stdout):
            for name, sa in msg.items():
                if isinstance(sa, dict):
                    sa = dict(sa)
                    sa["name"] = name
                    sas.append(sa)
        return sas


def summarize_sas(sas: list[dict], conn: str) -> dict:
    """Per-connection summary for status(): best IKE state, SPIs, IKE tasks under way
    or queued (e.g. IKE_DPD while a peer does not answer), installed children."""
    mine = [sa for sa in sas if sa.get("name") == conn]
    ike_states = [sa.get("state", "?") for sa in mine]
    children = []
    for sa in mine:
        for cname, child in (sa.get("child-sas") or {}).items():
            if isinstance(child, dict):
                children.append({
                    "name": child.get("name", cname),
                    "state": child.get("state"),
                    "local_ts": child.get("local-ts", []),
                    "remote_ts": child.get("remote-ts", []),
                    "bytes_in": int(child.get("bytes-in", 0) or 0),
                    "bytes_out": int(child.get("bytes-out", 0) or 0),
                })
    tasks = sorted({t for sa in mine for key in ("tasks-active", "tasks-queued")
                    for t in (sa.get(key) or []) if isinstance(sa.get(key), list)})
    state = "DOWN"
    if "ESTABLISHED" in ike_states:
        state = "ESTABLISHED"
    elif ike_states:
        state = ike_states[0]
    return {
        "ike_state": state,
        "ike_sas": len(mine),
        "ike_version": mine[0].get("version") if mine else None,
        "established_seconds": int(mine[0].get("established", 0) or 0) if mine else None,
        "ike_spis": [f"{sa.get('initiator-spi')}_i/{sa.get('responder-spi')}_r" for sa in mine],
        "tasks": tasks,
        "children": children,
        "children_installed": sum(1 for c in children if c["state"] == "INSTALLED"),
    }
