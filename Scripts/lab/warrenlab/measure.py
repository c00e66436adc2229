"""Measurements for lab tests: loss windows (continuous ping) and TCP throughput (iperf3).

What it does: `PingMonitor` runs `ping -D -i <interval>` inside a namespace while a
test breaks something, then parses the timestamped replies: the loss window is the
longest wall-clock gap between answers that had lost probes in between, minus one
interval (wall clock, because ping's send rate sags on a loaded machine).
`iperf3_tcp` runs a one-shot iperf3 server in one namespace and a client in another.

Invariants: every process started here is stopped by PID before the call returns
(or in `stop()`), also when the caller's test fails in between (use as a context
manager). Threading: one monitor per thread; no shared state.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

from .errors import LabError
from .host import ns_cmd

_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from [\d.]+: icmp_seq=(\d+) ")


@dataclass
class LossReport:
    """Result of a `PingMonitor` run (times are time.time() values)."""

    sent: int
    received: int
    loss_window_s: float
    lost: int
    first_lost_at: float | None
    recovered_at: float | None

    def as_dict(self) -> dict:
        return {"sent": self.sent, "received": self.received, "lost": self.lost,
                "loss_window_s": round(self.loss_window_s, 3)}


class PingMonitor:
    """Continuous ping from namespace `ns` to `target` every `interval` seconds."""

    def __init__(self, ns: str, target: str, interval: float = 0.02) -> None:
        self.ns, self.target, self.interval = ns, target, interval
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        # a file, not a pipe: a pipe nobody reads fills after ~800 replies and then
        # blocks ping, which silently stops probing
        self._out = tempfile.TemporaryFile(mode="w+")

    def __enter__(self) -> "PingMonitor":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ns_cmd(self.ns, ["ping", "-n", "-D", "-W", "1", "-i", str(self.interval), self.target]),
            stdout=self._out, stderr=subprocess.STDOUT, text=True)
        self.started_at = time.time()

    def stop(self) -> LossReport:
        """Stops ping (SIGINT, as a user would) and analyses its output."""
        if self.proc is None:
            raise LabError("PingMonitor.stop() before start()")
        stopped_at = time.time()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.seek(0)
        return analyse_ping(self._out.read(), self.interval, stopped_at)


def analyse_ping(text: str, interval: float, stopped_at: float | None = None) -> LossReport:
    """Loss window from `ping -D` output: the longest wall-clock gap between two
    answered probes that had unanswered probes between them, minus one interval
    (so a window of zero means no probe was lost). Unanswered probes after the last
    answer count up to `stopped_at` (a time.time() value)."""
    replies: list[tuple[int, float]] = []
    for line in text.splitlines():
        m = _REPLY.match(line)
        if m:
            replies.append((int(m.group(2)), float(m.group(1))))
    m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
    sent = int(m.group(1)) if m else (max(s for s, _ in replies) if replies else 0)
    if not replies:
        return LossReport(sent, 0, sent * interval, sent, None, None)
    replies = sorted(dict(replies).items())
    worst, first_lost, recovered = 0.0, None, None
    for (a, ta), (b, tb) in zip(replies, replies[1:]):
        if b - a > 1 and tb - ta - interval > worst:
            worst, first_lost, recovered = tb - ta - interval, ta, tb
    last_seq, last_t = replies[-1]
    if sent > last_seq and stopped_at is not None and stopped_at - last_t - interval > worst:
        worst, first_lost, recovered = stopped_at - last_t - interval, last_t, None
    return LossReport(sent, len(replies), max(worst, 0.0), max(sent - len(replies), 0),
                      first_lost, recovered)


def iperf3_tcp(server_ns: str, client_ns: str, server_ip: str, seconds: int = 3,
               reverse: bool = False, port: int = 5201) -> dict:
    """Runs iperf3 (TCP) for `seconds`; returns Mbit/s sent/received and retransmits.

    Raises `LabError` with iperf3's own error text if the run fails (e.g. TCP stalls
    through the tunnel)."""
    server = subprocess.Popen(ns_cmd(server_ns, ["iperf3", "-s", "-1", "-p", str(port)]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def listening() -> bool:
            if server.poll() is not None:
                raise LabError(f"iperf3 server in {server_ns} exited: {server.stderr.read().strip()}")
            out = subprocess.run(ns_cmd(server_ns, ["ss", "-Hltn", f"sport = :{port}"]),
                                 capture_output=True, text=True).stdout
            return bool(out.strip())

        deadline = time.monotonic() + 5
        while not listening():
            if time.monotonic() > deadline:
                raise LabError(f"iperf3 server in {server_ns} is not listening on port {port}")
            time.sleep(0.05)
        argv = ["iperf3", "-c", server_ip, "-p", str(port), "-t", str(seconds), "-J",
                "--connect-timeout", "3000"]
        if reverse:
            argv.append("-R")
        proc = subprocess.run(ns_cmd(client_ns, argv), capture_output=True, text=True,
                              timeout=seconds + 20)
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            data = {}
        end = data.get("end", {})
        if proc.returncode != 0 or "sum_sent" not in end or "sum_received" not in end:
            why = data.get("error") or (proc.stdout + proc.stderr).strip()[-300:]
            raise LabError(f"iperf3 {client_ns} -> {server_ip} (reverse={reverse}) failed "
                           f"(exit {proc.returncode}): {why}")
        return {
            "seconds": seconds, "reverse": reverse,
            "sent_mbit_s": round(end["sum_sent"]["bits_per_second"] / 1e6, 1),
            "received_mbit_s": round(end["sum_received"]["bits_per_second"] / 1e6, 1),
            "retransmits": end["sum_sent"].get("retransmits"),
        }
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
