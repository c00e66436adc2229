"""Host plumbing for the lab: running commands, network namespaces, daemons.

What it does: thin, explicit wrappers over iproute2 (`ip`, `ip netns exec`),
sysctl and nft, plus a `Daemon` record for long-running processes (charon, BIRD)
that the lab starts and later stops *by PID*.

Invariants:
- Every namespace and root-namespace interface the lab touches carries the lab's
  prefix; nothing here ever adds an address in the root namespace.
- A daemon is identified by (pid, start time in clock ticks since boot) read from
  /proc/<pid>/stat; it is signalled only if both still match, so a recycled PID
  that belongs to somebody else is never killed.
- Daemon pid records are JSON files in the lab's state directory, written right
  after spawning, so a later process (the CLI, or `down()` after a crash) can stop
  what an earlier one started.
- Commands are never logged with secrets: callers pass secrets only in files.

Threading: functions are synchronous and hold no shared state; the only shared
resource is the filesystem (pid records), which one lab instance owns by prefix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import LabError

IP = "ip"


def run(cmd: Sequence[str], *, check: bool = True, timeout: float = 30.0,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `cmd` (no shell) and returns the completed process.

    Raises `LabError` naming the command and its stderr when `check` is set and the
    command fails or times out.
    """
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                              input=input_text)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"command timed out after {timeout:.0f}s: {' '.join(cmd)}") from exc
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {cmd[0]} (is it installed?)") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip())[-800:]
        raise LabError(f"command failed (exit {proc.returncode}): {' '.join(cmd)}: {detail}")
    return proc


def ns_cmd(ns: str, cmd: Sequence[str]) -> list[str]:
    """The argv that runs `cmd` inside network namespace `ns`."""
    return [IP, "netns", "exec", ns, *cmd]


def ns_run(ns: str, cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess[str]:
    """Runs `cmd` inside namespace `ns` (see `run`)."""
    return run(ns_cmd(ns, cmd), **kwargs)


def ip_batch(ns: str | None, lines: Sequence[str]) -> None:
    """Runs several `ip` commands in one process (`ip [-n ns] -batch -`).

    Each line is an `ip` command without the leading `ip`. Stops at the first error
    and raises `LabError` naming the namespace.
    """
    if not lines:
        return
    cmd = [IP] + (["-n", ns] if ns else []) + ["-batch", "-"]
    proc = run(cmd, check=False, input_text="\n".join(lines) + "\n")
    if proc.returncode != 0:
        where = ns or "root namespace"
        raise LabError(f"ip batch in {where} failed: {proc.stderr.strip()[-800:]}")


def namespace_exists(name: str) -> bool:
    """Whether /run/netns/<name> exists."""
    return os.path.exists(f"/run/netns/{name}")


def create_namespace(name: str, *, forwarding: bool) -> None:
    """Creates namespace `name` with loopback up, rp_filter off and, if asked, IPv4
    forwarding on. Raises `LabError` if it already exists."""
    if namespace_exists(name):
        raise LabError(f"namespace {name} already exists (run down() first)")
    run([IP, "netns", "add", name])
    ip_batch(name, ["link set lo up"])
    settings = ["net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                f"net.ipv4.ip_forward={1 if forwarding else 0}",
                "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
    ns_run(name, ["sysctl", "-q", "-w", *settings])


def namespace_pids(name: str) -> list[int]:
    """PIDs of every process whose network namespace is `name`."""
    if not namespace_exists(name):
        return []
    out = run([IP, "netns", "pids", name], check=False).stdout
    return [int(tok) for tok in out.split() if tok.isdigit()]


def delete_namespace(name: str) -> None:
    """Kills every process left in namespace `name` (they can only be the lab's own,
    since the namespace is the lab's) and deletes the namespace. Idempotent."""
    if not namespace_exists(name):
        return
    pids = namespace_pids(name)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3.0
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _alive(p)]
        if pids:
            time.sleep(0.05)
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    run([IP, "netns", "delete", name], check=False)
    if namespace_exists(name):
        raise LabError(f"could not delete namespace {name}")


def delete_root_link(name: str) -> None:
    """Deletes root-namespace link `name` if it exists (the caller guarantees it is
    the lab's own, i.e. carries its prefix)."""
    if os.path.exists(f"/sys/class/net/{name}"):
        run([IP, "link", "delete", name], check=False)


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Polls `predicate()` until it returns a truthy value, which is returned.

    Raises `LabError("timed out after Ns waiting for <what>")` on timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def _proc_start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "r", encoding="ascii", errors="replace") as fh:
            data = fh.read()
    except OSError:
        return None
    # comm may contain spaces/parens: fields start after the last ')'
    rest = data[data.rfind(")") + 2:].split()
    if len(rest) < 20:
        return None
    state = rest[0]
    if state in ("Z", "X"):
        return None
    return int(rest[19])


def _alive(pid: int) -> bool:
    return _proc_start_time(pid) is not None


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


@dataclass
class Daemon:
    """A long-running process the lab started: `name` (e.g. "charon"), namespace,
    PID and its start time (to recognise PID reuse), and its pid record file."""

    name: str
    namespace: str
    pid: int
    start_time: int
    record: Path

    @staticmethod
    def spawn(name: str, namespace: str, argv: Sequence[str], *, log_path: Path,
              record: Path, env: dict[str, str] | None = None) -> "Daemon":
        """Starts `argv` inside `namespace` in its own session (so it outlives the
        calling process), stdout/stderr appended to `log_path`, and writes the pid
        record. `argv` must exec its final program (no fork) so that the PID is the
        daemon's."""
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(ns_cmd(namespace, argv), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=full_env, close_fds=True)
        start = _proc_start_time(proc.pid)
        if start is None:
            rc = proc.wait(timeout=5)
            raise LabError(f"{name} in {namespace} exited at once (exit {rc}); see {log_path}")
        daemon = Daemon(name, namespace, proc.pid, start, record)
        record.write_text(json.dumps({"name": name, "namespace": namespace, "pid": proc.pid,
                                      "start_time": start}) + "\n")
        # Popen objects are dropped on purpose: the daemon is reaped by init once this
        # process exits; while we live, `alive()` treats a zombie as dead.
        _ZOMBIE_KEEPER.append(proc)
        return daemon

    @staticmethod
    def load(record: Path) -> "Daemon | None":
        """Reads a pid record; None if missing or unreadable."""
        try:
            data = json.loads(record.read_text())
            return Daemon(data["name"], data["namespace"], int(data["pid"]),
                          int(data["start_time"]), record)
        except (OSError, ValueError, KeyError):
            return None

    def alive(self) -> bool:
        """Whether this very process (same PID and start time) still runs."""
        _reap()
        return _proc_start_time(self.pid) == self.start_time

    def kill(self, sig: int = signal.SIGTERM, wait: float = 3.0) -> None:
        """Sends `sig`; if the process has not exited after `wait` seconds, SIGKILL.
        Removes the pid record. Does nothing to a PID that now belongs to another
        process."""
        if self.alive():
            _signal(self.pid, sig)
            deadline = time.monotonic() + wait
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.alive():
                _signal(self.pid, signal.SIGKILL)
                wait_for(lambda: not self.alive(), 3.0, what=f"{self.name} pid {self.pid} to die")
        try:
            self.record.unlink()
        except FileNotFoundError:
            pass


_ZOMBIE_KEEPER: list[subprocess.Popen] = []


def _reap() -> None:
    for proc in list(_ZOMBIE_KEEPER):
        if proc.poll() is not None:
            _ZOMBIE_KEEPER.remove(proc)
