"""End-to-end harness: a real warren-agent, real network namespaces, real traffic.

What it gives tests:
- `Agent`: starts `warren-agent --config FILE` from the build directory, waits for its
  socket, calls JSON-RPC methods over the Unix socket (standard library only), stops it
  with SIGTERM or kills it with SIGKILL, restarts it on the same state directory.
- `Hosts`: "VM" namespaces attached to the host by a veth whose host end the agent's
  port is bound to; commands run inside them; everything created is recorded and removed
  in `cleanup()` — also after a failed test (the pytest fixtures call it in a finally).

Conventions (from the project rules): every namespace and host interface this harness
creates starts with the prefix "we" ("we-<name>" namespaces, "we<name>" veths); only
100.64.0.0/10, 198.51.100.0/24, 203.0.113.0/24 and 169.254.0.0/16 are used inside them;
no address is ever put in the root namespace; only processes we started are signalled,
by PID.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("WARREN_BUILD_DIR", ROOT / ".build" / "debug"))
PREFIX = "we"


class RPCError(Exception):
    def __init__(self, error: dict):
        super().__init__(f"{error.get('code')}: {error.get('message')} {error.get('data')}")
        self.code = error.get("code")
        self.message = error.get("message")
        self.data = error.get("data") or {}

    @property
    def field(self) -> str | None:
        return self.data.get("field")


class Connection:
    """One persistent NDJSON connection to the agent's Unix socket (`Agent.call` opens one
    per call). Pushed `agent.event` notifications are kept apart from answers."""

    def __init__(self, path: str, timeout: float = 30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buffer = b""
        self.events: list[dict] = []
        self.next_id = 1

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def send_line(self, text: str):
        self.sock.sendall(text.encode() + b"\n")

    def read(self, timeout: float = 30):
        """The next message, or None if none came within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the agent closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def answer(self, timeout: float = 30):
        """The next message that is not an event (events are kept in `events`)."""
        while True:
            m = self.read(timeout)
            assert m is not None, f"no answer within {timeout} s"
            if isinstance(m, dict) and m.get("method") == "agent.event":
                self.events.append(m)
            else:
                return m

    def event(self, timeout: float = 10) -> dict:
        """The next pushed agent.event (answers must not arrive meanwhile)."""
        while not self.events:
            m = self.read(timeout)
            assert m is not None, f"no agent.event within {timeout} s"
            assert isinstance(m, dict) and m.get("method") == "agent.event", f"expected an event, got {m!r}"
            self.events.append(m)
        return self.events.pop(0)

    def take_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def request(self, method: str, params=None) -> dict:
        """Sends one call and returns the whole response object."""
        rid = self.take_id()
        self.send_line(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}))
        response = self.answer()
        assert response.get("id") == rid, f"answer to {rid} expected, got {response}"
        return response

    def call(self, method: str, params=None):
        response = self.request(method, params)
        if "error" in response:
            raise RPCError(response["error"])
        return response["result"]

    def close(self):
        self.sock.close()


def run(cmd: list[str] | str, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    if isinstance(cmd, str):
        cmd = ["sh", "-c", cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stdout}{p.stderr}")
    return p


class Agent:
    """A warren-agent process on its own state directory."""

    def __init__(self, config: dict | None = None, state_dir: str | None = None, binary: str = "warren-agent"):
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="we-agent-")
        self.config = dict(config or {})
        self.config["stateDirectory"] = self.state_dir
        self.binary = str(BUILD / binary)
        self.proc: subprocess.Popen | None = None
        self.socket_path = os.path.join(self.state_dir, "warren.sock")
        self.log_path = os.path.join(self.state_dir, "agent.log")
        self._next_id = 1

    def start(self, wait: float = 20) -> "Agent":
        cfg = os.path.join(self.state_dir, "config.json")
        with open(cfg, "w") as f:
            json.dump(self.config, f)
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([self.binary, "--config", cfg], stdout=log, stderr=log)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"warren-agent exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                self.call("agent.status")
                return self
            except (OSError, RPCError):
                time.sleep(0.1)
        raise RuntimeError(f"warren-agent did not answer within {wait}s: {self.log()[-2000:]}")

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text()
        except OSError:
            return ""

    def call(self, method: str, params: dict | None = None, timeout: float = 60, **kw):
        """One JSON-RPC call over the Unix socket; raises RPCError for error responses."""
        if params is None:
            params = kw
        req = {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}
        self._next_id += 1
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.socket_path)
            s.sendall(json.dumps(req).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("agent closed the connection")
                buf += chunk
        resp = json.loads(buf)
        if "error" in resp:
            raise RPCError(resp["error"])
        return resp["result"]

    def stop(self, sig: int = signal.SIGTERM, wait: float = 30) -> int | None:
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self, sig: int = signal.SIGTERM) -> "Agent":
        self.stop(sig)
        return self.start()

    def cleanup(self, remove_state: bool = True) -> None:
        self.stop()
        if remove_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)


class Hosts:
    """VM-like namespaces, each with one interface `eth0` whose host end is `we<name>`."""

    def __init__(self):
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self.pids: list[subprocess.Popen] = []

    def vm(self, name: str, cidr: str | None = None, gateway: str | None = None, mac: str | None = None,
           offloads: bool = False) -> "VM":
        ns, host_if = f"{PREFIX}-{name}", f"{PREFIX}{name}"
        assert len(host_if) <= 15, host_if
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns])
        self.links.append(host_if)
        run(["ip", "link", "set", host_if, "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        if mac:
            run(["ip", "-n", ns, "link", "set", "eth0", "address", mac])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        if cidr:
            run(["ip", "-n", ns, "addr", "add", cidr, "dev", "eth0"])
        if gateway:
            run(["ip", "-n", ns, "route", "add", "default", "via", gateway])
        if not offloads:
            # The datapath completes offloaded checksums but does not segment TSO/GSO
            # super-frames; VMs on packet-socket datapaths run with segmentation off.
            run(["ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tso", "off", "gso", "off", "gro", "off"], check=False)
        return VM(self, ns, host_if, cidr.split("/")[0] if cidr else None)

    def spawn(self, ns: str, cmd: list[str]) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", ns] + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pids.append(p)
        return p

    def cleanup(self) -> None:
        for p in self.pids:
            if p.poll() is None:
                p.kill()
                p.wait()
        for link in self.links:
            run(["ip", "link", "del", link], check=False)
        for ns in self.namespaces:
            run(["ip", "netns", "del", ns], check=False)
        self.namespaces.clear()
        self.links.clear()


class VM:
    def __init__(self, hosts: Hosts, ns: str, host_if: str, ip: str | None):
        self.hosts, self.ns, self.host_if, self.ip = hosts, ns, host_if, ip

    def exec(self, cmd: list[str] | str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        if isinstance(cmd, str):
            cmd = ["sh", "-c", cmd]
        return run(["ip", "netns", "exec", self.ns] + cmd, check=check, timeout=timeout)

    def ping(self, target: str, count: int = 3, interval: float = 0.2, timeout: float = 2, ttl: int | None = None) -> int:
        """Returns the number of replies."""
        cmd = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(timeout)]
        if ttl:
            cmd += ["-t", str(ttl)]
        p = self.exec(cmd + [target], check=False, timeout=count * (interval + timeout) + 10)
        for line in p.stdout.splitlines():
            if "received" in line:
                return int(line.split(",")[1].split()[0])
        return 0

    def mac(self) -> str:
        return self.exec(["cat", "/sys/class/net/eth0/address"]).stdout.strip()

    def spawn(self, cmd: list[str]) -> subprocess.Popen:
        return self.hosts.spawn(self.ns, cmd)


def wait_until(predicate, timeout: float = 10, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
