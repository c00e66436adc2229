"""warren-agent as a process: persistence across kill -9, refusing to start on a taken,
corrupt or newer state directory, bad input on the socket, concurrent clients, HTTP with
a bearer token and metrics, event subscriptions, graceful SIGTERM.

No namespaces or interfaces: the agent's ports stay unbound (or bound to absent
interfaces), so only the control plane is exercised.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from warren_e2e import Agent, Connection


def digest(paths: list[Path]) -> dict[str, str | None]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths}


def store_files(state_dir: str) -> list[Path]:
    """The database and its write-ahead log. (Not the -shm file: it is SQLite's shared-memory
    index, which any reader of a WAL database may rebuild; it holds no data.)"""
    return [Path(state_dir) / n for n in ("warren.db", "warren.db-wal")]


def start_refused(agent: Agent) -> subprocess.CompletedProcess:
    """Runs warren-agent on `agent`'s configuration expecting it to refuse to start."""
    cfg = os.path.join(agent.state_dir, "config.json")
    with open(cfg, "w") as f:
        json.dump(agent.config, f)
    p = subprocess.run([agent.binary, "--config", cfg], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0, f"warren-agent started (exit {p.returncode}): {p.stderr[-2000:]}"
    return p


def check_consistent(topo: dict):
    """No half-done resource: every reference points at something that exists."""
    bridges = {b["id"]: b for b in topo["bridges"]}
    routers = {r["id"]: r for r in topo["routers"]}
    ports = {p["id"]: p for p in topo["ports"]}
    chains = {c["id"] for c in topo["chains"]}
    for p in ports.values():
        assert p["device"] in bridges or p["device"] in routers, f"port {p['name']} on a missing device"
        if p["binding"] == "interior":
            peer = ports.get(p["peer"])
            assert peer and peer.get("peer") == p["id"], f"port {p['name']}: link not symmetric"
        for hook in ("inboundChain", "outboundChain"):
            assert p.get(hook) is None or p[hook] in chains, f"port {p['name']}: missing {hook}"
    for d in list(bridges.values()) + list(routers.values()):
        names = {ports[i]["name"] for i in ports if ports[i]["device"] == d["id"]}
        assert set(d["ports"]) == names, f"{d['name']}: ports {d['ports']} but ports on it are {names}"
    for r in topo["routes"]:
        assert r["router"] in routers and r["nextHopPort"] in ports, f"route {r['id']} dangles"


# ---------------------------------------------------------------------------------------
# Persistence across kill -9


def mutation_plan(n_groups: int) -> list[tuple[str, dict, str, str]]:
    """[(method, params, kind, name)]: creates of every kind, links, routes, rules and deletes."""
    ops = []
    for g in range(n_groups):
        b, r, c, x = f"pb{g}", f"pr{g}", f"pc{g}", f"px{g}"
        ops += [
            ("bridge.create", {"name": b}, "bridge", b),
            ("router.create", {"name": r}, "router", r),
            ("port.create", {"device": r, "name": f"{r}-p", "address": f"100.64.{g}.1/24"}, "port", f"{r}-p"),
            ("port.create", {"device": b, "name": f"{b}-p"}, "port", f"{b}-p"),
            ("port.link", {"port": f"{r}-p", "peer": f"{b}-p"}, "link", f"{r}-p"),
            ("route.add", {"router": r, "destination": "198.51.100.0/24", "nextHopPort": f"{r}-p",
                           "nextHopGateway": f"100.64.{g}.254"}, "route", r),
            ("chain.create", {"name": c, "defaultAction": "drop"}, "chain", c),
            ("rule.add", {"chain": c, "action": "accept", "name": f"{c}-r", "match": {"ipProto": 6}}, "rule", c),
            ("bridge.create", {"name": x}, "bridge", x),
            ("bridge.delete", {"name": x}, "bridge-", x),
        ]
    return ops


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill9_mid_stream_keeps_every_acknowledged_mutation(seed):
    rng = random.Random(seed)
    ops = mutation_plan(50)
    kill_after = rng.randrange(40, len(ops) - 60)  # acknowledged mutations before the kill
    a = Agent()
    try:
        a.start()
        acked: list[int] = []
        counter = threading.Semaphore(0)
        error: list[BaseException] = []

        def client():
            conn = Connection(a.socket_path, timeout=10)
            try:
                for i, (method, params, _, _) in enumerate(ops):
                    conn.call(method, params)
                    acked.append(i)
                    counter.release()
            except (OSError, ConnectionError, AssertionError, json.JSONDecodeError):
                pass  # the agent died mid-call: that call is not acknowledged
            except BaseException as e:  # an RPC error would be a test bug
                error.append(e)
            finally:
                conn.close()

        def killer():
            for _ in range(kill_after):
                counter.acquire(timeout=30)
            time.sleep(rng.random() * 0.005)  # anywhere within the next call or two
            a.proc.send_signal(signal.SIGKILL)

        threads = [threading.Thread(target=client), threading.Thread(target=killer)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        a.proc.wait(timeout=10)
        assert a.proc.returncode == -signal.SIGKILL
        assert not error, error
        done = len(acked)
        assert kill_after <= done < len(ops), f"killed after {done} of {len(ops)} acknowledged mutations"
        print(f"seed {seed}: killed after {done} of {len(ops)} acknowledged mutations")

        a.start()
        topo = a.call("topology.get")
        check_consistent(topo)
        present = {"bridge": {b["name"] for b in topo["bridges"]}, "router": {r["name"] for r in topo["routers"]},
                   "port": {p["name"] for p in topo["ports"]}, "chain": {c["name"] for c in topo["chains"]}}
        ports = {p["name"]: p for p in topo["ports"]}
        static = {r["routerName"] for r in topo["routes"] if r["source"] == "static"}
        chains = {c["name"]: c for c in topo["chains"]}
        in_flight = ops[done][3] if done < len(ops) else None  # applied or not: either is right
        for i in acked:
            _, _, kind, name = ops[i]
            if name == in_flight:
                continue
            later_delete = any(ops[j][2] == "bridge-" and ops[j][3] == name for j in acked if j > i)
            if kind in present and not later_delete:
                assert name in present[kind], f"acknowledged {ops[i][0]} {name} (#{i} of {done}) is missing"
            elif kind == "bridge-":
                assert name not in present["bridge"], f"acknowledged bridge.delete {name} (#{i}) is undone"
            elif kind == "link":
                assert ports[name]["binding"] == "interior", f"acknowledged port.link of {name} (#{i}) is missing"
            elif kind == "route":
                assert name in static, f"acknowledged route.add on {name} (#{i}) is missing"
            elif kind == "rule":
                assert [r["name"] for r in chains[name]["rules"]] == [f"{name}-r"], f"rule of {name} (#{i})"
        # Nothing beyond the acknowledged prefix plus the one call in flight was applied.
        created = {ops[i][3] for i in range(min(done + 1, len(ops))) if ops[i][2] in present}
        for kind in present:
            extra = present[kind] - created
            assert not extra, f"{kind}s never acknowledged nor in flight are present: {sorted(extra)}"
        # The restarted agent keeps working on the same names.
        a.call("bridge.create", name=f"after-kill-{seed}")
        a.call("bridge.delete", name=f"after-kill-{seed}")
    finally:
        a.cleanup()


# ---------------------------------------------------------------------------------------
# Refusing to start


def test_second_agent_on_the_same_state_directory_is_refused(agent):
    p = start_refused(agent)
    assert f"pid {agent.proc.pid}" in p.stderr and "in use by another warren-agent" in p.stderr, p.stderr[-2000:]
    # The first agent was not disturbed: its socket still answers.
    assert agent.call("agent.status")["version"]
    assert agent.proc.poll() is None


def test_corrupt_store_is_refused_and_left_untouched():
    a = Agent()
    try:
        db = Path(a.state_dir) / "warren.db"
        db.write_bytes(b"this is not a database\n" + random.Random(7).randbytes(8192))
        before = digest(store_files(a.state_dir))
        p = start_refused(a)
        assert f"the store {db} is corrupt" in p.stderr and "refusing to start" in p.stderr, p.stderr[-2000:]
        assert digest(store_files(a.state_dir)) == before
        assert not os.path.exists(a.socket_path)
    finally:
        a.cleanup()


def test_newer_schema_store_is_refused_and_left_untouched():
    a = Agent()
    try:
        a.start()
        a.call("bridge.create", name="b-old")
        assert a.stop() == 0
        db = Path(a.state_dir) / "warren.db"
        with sqlite3.connect(db) as c:
            c.execute("INSERT INTO grdb_migrations (identifier) VALUES ('v99: from the future')")
        before = digest(store_files(a.state_dir))
        p = start_refused(a)
        assert "was written by a newer warren-agent" in p.stderr and "v99: from the future" in p.stderr, p.stderr[-2000:]
        assert digest(store_files(a.state_dir)) == before
        # Removing the unknown migration makes the same store usable again, data intact.
        with sqlite3.connect(db) as c:
            c.execute("DELETE FROM grdb_migrations WHERE identifier = 'v99: from the future'")
        a.start()
        assert [b["name"] for b in a.call("bridge.list")["items"]] == ["b-old"]
    finally:
        a.cleanup()


def test_token_file_readable_by_others_is_refused(tmp_path):
    token = tmp_path / "token"
    token.write_text("a-secret-token-" + os.urandom(8).hex() + "\n")
    token.chmod(0o644)
    a = Agent(config={"http": {"listen": "127.0.0.1:0", "tokenFile": str(token)}})
    try:
        p = start_refused(a)
        assert "http.tokenFile" in p.stderr and "mode 644" in p.stderr, p.stderr[-2000:]
        assert token.read_text().strip() not in p.stderr
    finally:
        a.cleanup()


# ---------------------------------------------------------------------------------------
# Bad input on the socket


def version(agent: Agent) -> int:
    return agent.call("topology.get")["version"]


def test_garbage_on_the_socket_is_answered_and_changes_nothing(agent):
    rng = random.Random(42)
    agent.call("bridge.create", name="b1")
    v = version(agent)
    conn = Connection(agent.socket_path)
    try:
        # Random bytes: parse errors (a line that is not JSON), the connection stays usable.
        for _ in range(20):
            junk = bytes(b for b in rng.randbytes(rng.randrange(1, 400)) if b != 0x0A and b not in b" \t\r")
            if not junk or junk[:1] in (b"[", b"{", b'"') or junk.strip(b"0123456789-.eE+") == b"":
                continue
            conn.send_raw(junk + b"\n")
            m = conn.answer()
            assert m["error"]["code"] == -32700 and m["id"] is None, (junk, m)
        # Random JSON that is not a request.
        for doc in [42, "bridge.list", None, True, {}, {"jsonrpc": "2.0"}, {"jsonrpc": "1.0", "id": 1, "method": "bridge.list"},
                    {"jsonrpc": "2.0", "id": {"x": 1}, "method": "bridge.list"}, {"jsonrpc": "2.0", "id": 1, "method": 5},
                    {"jsonrpc": "2.0", "id": 1, "method": "bridge.list", "params": [1, 2]}]:
            conn.send_raw(json.dumps(doc).encode() + b"\n")
            m = conn.answer()
            assert m["error"]["code"] in (-32600, -32602), (doc, m)
        conn.send_raw(b"[1, 2]\n")
        m = conn.answer()
        assert [e["error"]["code"] for e in m] == [-32600, -32600], m
        # Malformed text inside otherwise valid JSON.
        for line in [b'{"jsonrpc":"2.0","id":1,"method":"bridge.create","params":{"name":"\xff\xfe"}}',
                     b'{"jsonrpc":"2.0","id":1,"method":"bridge.create","params":{"name":"\\ud800"}}',
                     b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"bridge.list"}',
                     b'{"jsonrpc":"2.0","id":1,"method":"bridge.list"}\x00']:
            conn.send_raw(line + b"\n")
            m = conn.answer()
            assert m["error"]["code"] == -32700 and m["id"] is None, (line, m)
        # Deep nesting is refused without recursing (no crash).
        for depth in (600, 100_000):
            conn.send_raw(b"[" * depth + b"]" * depth + b"\n")
            m = conn.answer()
            assert m["error"]["code"] in (-32700, -32600), m
            conn.send_raw(b'{"a":' * depth + b"1" + b"}" * depth + b"\n")
            assert conn.answer()["error"]["code"] in (-32700, -32600)
        # Unknown methods.
        assert conn.request("bridge.explode")["error"] == {"code": -32601, "message": "Method not found",
                                                           "data": {"method": "bridge.explode"}}
        assert conn.call("bridge.get", {"name": "b1"})["name"] == "b1"
    finally:
        conn.close()
    assert version(agent) == v
    assert agent.proc.poll() is None


def test_a_100_mib_line_is_refused_without_buffering_it(agent):
    conn = Connection(agent.socket_path, timeout=10)
    chunk = b"x" * (1 << 20)
    sent = 0
    try:
        while sent < 100 << 20:
            conn.sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    assert sent < 100 << 20, "the agent read all 100 MiB of one line"
    m = conn.read(10)
    assert m == {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Invalid Request",
                                                         "data": {"reason": "request exceeds 1048576 bytes"}}}, m
    conn.close()
    status = Path(f"/proc/{agent.proc.pid}/status").read_text()
    peak_kib = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
    print(f"sent {sent >> 20} MiB before the agent closed; agent peak RSS {peak_kib} KiB")
    assert peak_kib < 90 * 1024, f"agent peak RSS {peak_kib} KiB after a 100 MiB line"
    assert agent.call("bridge.list") == {"items": []}


FIELD_ERRORS = [
    ("port.create", {"device": "r1", "name": "r1-x", "address": "100.64.0.0/33"}, -32602, "address"),
    ("port.create", {"device": "r1", "name": "r1-x", "address": "100.64.0.1/24", "mac": "02:00:00:00:00"}, -32602, "mac"),
    ("port.create", {"device": "b1", "name": "b1-x", "vlan": "ten"}, -32602, "vlan"),
    ("port.create", {"device": "b1", "name": "b1-x", "vlan": 5000}, -32602, "vlan"),
    ("port.create", {"device": "nope", "name": "x"}, -32001, "device"),
    ("port.create", {"device": "b1"}, -32602, "name"),
    ("bridge.create", {"name": 7}, -32602, "name"),
    ("bridge.create", {"name": "x" * 65}, -32602, "name"),
    ("bridge.create", {"name": "b1"}, -32002, "name"),
    ("router.create", {"name": "r1"}, -32002, "name"),
    ("port.create", {"device": "b1", "name": "b1-p"}, -32002, "name"),
    ("bridge.create", {"name": "b9", "macAgingSecs": 5}, -32602, "macAgingSecs"),
    ("bridge.create", {"name": "a\u0000b"}, -32602, "name"),
    ("bridge.create", {"name": "b9", "macAgingSeconds": 1e10}, -32602, "macAgingSeconds"),
    ("port.update", {"id": "b1-p", "vlan": -5}, -32602, "vlan"),
    ("flow.list", {"limit": 0}, -32602, "limit"),
    ("bridge.delete", {"name": "b1"}, -32003, "id"),
    ("bridge.delete", {"name": "nope"}, -32001, "id"),
    ("router.update", {"id": "r1", "macAgingSeconds": 5}, -32602, "macAgingSeconds"),
    ("route.add", {"router": "r1", "destination": "198.51.100.0/24", "nextHopPort": "nope"}, -32001, "nextHopPort"),
    ("route.add", {"router": "r1", "destination": "198.51.100.0/40", "nextHopPort": "r1-p"}, -32602, "destination"),
    ("route.add", {"router": "r9", "destination": "198.51.100.0/24", "nextHopPort": "r1-p"}, -32001, "router"),
    ("port.link", {"port": "b1-p", "peer": "nope"}, -32001, "peer"),
    ("port.bind", {"port": "b1-p", "interface": 3}, -32602, "interface"),
    ("rule.add", {"chain": "c1", "action": "explode"}, -32602, "action"),
    ("rule.add", {"chain": "c1", "action": "drop", "match": {"dstPortMin": 10, "dstPortMax": 5}}, -32602, "match.dstPortMin"),
    ("rule.add", {"chain": "c1", "action": "drop", "match": {"ipSrc": "300.1.1.1/8"}}, -32602, "match.ipSrc"),
    ("chain.delete", {"name": "c1"}, -32003, "id"),
    ("route.delete", {"id": "00000000-0000-4000-8000-000000000000"}, -32001, "id"),
    ("packet.trace", {"port": "b1-p", "packet": {"ipDst": "1.2.3"}}, -32602, "packet.ipDst"),
    ("vpn.dynamic.create", {"name": "v", "virtualRouter": "r1"}, -32602, None),
    ("labels.set", {"resource": {"kind": "route", "id": "x"}, "key": "k", "value": "v"}, -32602, "resource.kind"),
]


def test_refused_calls_name_the_field_and_change_nothing(agent):
    agent.call("bridge.create", name="b1")
    agent.call("router.create", name="r1")
    agent.call("port.create", device="b1", name="b1-p")
    agent.call("port.create", device="r1", name="r1-p", address="100.64.0.1/24")
    agent.call("chain.create", name="c1")
    agent.call("chain.attach", chain="c1", port="b1-p", hook="inbound")
    before = agent.call("topology.get")
    conn = Connection(agent.socket_path)
    try:
        for method, params, code, field in FIELD_ERRORS:
            m = conn.request(method, params)
            assert "error" in m, f"{method} {params} was accepted: {m}"
            e = m["error"]
            assert e["code"] == code, f"{method} {params}: {e}"
            if field is not None:
                assert e["data"].get("field") == field, f"{method} {params}: {e}"
            else:
                assert e["data"].get("field"), f"{method} {params}: no field named: {e}"
            assert e["data"].get("reason"), e
            assert conn.call("topology.get")["version"] == before["version"], f"{method} {params} changed the version"
    finally:
        conn.close()
    assert agent.call("topology.get") == before


def test_16_concurrent_clients_200_calls_each(agent):
    agent.call("router.create", name="r1")
    failures: list[str] = []
    counts = [0] * 16

    def client(k: int):
        try:
            conn = Connection(agent.socket_path)
            for i in range(200):
                if i % 20 == 0:
                    name = f"cc{k}-{i}"
                    assert conn.call("bridge.create", {"name": name})["name"] == name
                elif i % 20 == 1:
                    conn.call("bridge.delete", {"name": f"cc{k}-{i - 1}"})
                elif i % 7 == 0:
                    assert conn.request("bridge.get", {"name": "no-such"})["error"]["code"] == -32001
                else:
                    assert conn.call("router.get", {"name": "r1"})["name"] == "r1"
                counts[k] += 1
            conn.close()
        except BaseException as e:
            failures.append(f"client {k}: {e!r}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.monotonic() - t0
    assert not failures, failures
    assert counts == [200] * 16, counts
    assert agent.call("bridge.list") == {"items": []}
    # 16 clients × 10 creates and 10 deletes each, plus the router.
    assert agent.call("topology.get")["version"] == 1 + 16 * 20
    print(f"3200 calls from 16 clients in {elapsed:.2f} s")


# ---------------------------------------------------------------------------------------
# HTTP


def http(url: str, token: str | None, body: bytes | None = None, method: str | None = None):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_http_needs_the_bearer_token_and_serves_metrics(tmp_path):
    token = "tok-" + os.urandom(16).hex()
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    a = Agent(config={"http": {"listen": f"127.0.0.1:{port}", "tokenFile": str(token_file)}})
    try:
        a.start()
        base = f"http://127.0.0.1:{port}"
        create = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "bridge.create", "params": {"name": "hb"}}).encode()
        for t in (None, "wrong-" + token, token[:-1], ""):
            status, body, headers = http(base + "/rpc", t, create)
            assert status == 401, (t, status, body)
            assert headers.get("WWW-Authenticate", "").startswith("Bearer")
            assert b"jsonrpc" not in body
        assert a.call("bridge.list") == {"items": []}, "a refused HTTP request was processed"
        status, body, _ = http(base + "/rpc", token, create)
        assert status == 200, (status, body)
        answer = json.loads(body)
        assert answer["id"] == 1 and answer["result"]["name"] == "hb", answer
        assert [b["name"] for b in a.call("bridge.list")["items"]] == ["hb"]
        # A notification over HTTP: 204, no body, but it ran.
        note = json.dumps({"jsonrpc": "2.0", "method": "bridge.delete", "params": {"name": "hb"}}).encode()
        status, body, _ = http(base + "/rpc", token, note)
        assert (status, body) == (204, b"")
        assert a.call("bridge.list") == {"items": []}
        # Subscriptions are for the socket.
        status, body, _ = http(base + "/rpc", token, json.dumps(
            {"jsonrpc": "2.0", "id": 2, "method": "agent.subscribe", "params": {"topics": ["*"]}}).encode())
        assert json.loads(body)["error"]["code"] == -32003
        # Metrics.
        assert http(base + "/metrics", None)[0] == 401
        status, body, headers = http(base + "/metrics", token)
        assert status == 200, status
        text = body.decode()
        assert "# TYPE warren_flows gauge" in text and "warren_flow_lookups_total" in text, text[:2000]
        assert any(line.startswith("warren_") for line in text.splitlines())
        assert http(base + "/nowhere", token)[0] == 404
        status, body, _ = http(base + "/rpc", token, b"x" * (2 << 20))
        assert status == 413, status
        assert token not in a.log()
    finally:
        a.cleanup()


# ---------------------------------------------------------------------------------------
# Events, shutdown


def test_subscribers_receive_topology_events(agent):
    sub = Connection(agent.socket_path)
    other = Connection(agent.socket_path)
    try:
        assert sub.call("agent.subscribe", {"topics": ["topology"]}) == {"topics": ["topology"]}
        quiet = Connection(agent.socket_path)
        quiet.call("agent.subscribe", {"topics": ["vpn"]})
        v0 = other.call("topology.get")["version"]
        other.call("bridge.create", {"name": "eb"})
        other.call("port.create", {"device": "eb", "name": "eb-p"})
        assert other.request("bridge.create", {"name": "eb"})["error"]["code"] == -32002  # no event for a refusal
        other.call("port.delete", {"name": "eb-p"})
        got = []
        for _ in range(3):
            while not sub.events:
                m = sub.read(10)
                assert m is not None, f"only {got} arrived"
                sub.events.append(m)
            got.append(sub.events.pop(0))
        assert all(e["method"] == "agent.event" and "id" not in e and e["params"]["topic"] == "topology" for e in got), got
        assert [(e["params"]["data"]["change"], e["params"]["data"]["version"]) for e in got] == \
            [("bridge.created", v0 + 1), ("port.created", v0 + 2), ("port.deleted", v0 + 3)], got
        seqs = [e["params"]["seq"] for e in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3, seqs
        assert sub.read(0.5) is None, "an event for the refused call arrived"
        assert quiet.read(0.5) is None, "a 'vpn' subscriber received a topology event"
        # Unsubscribed: no more events.
        assert sub.call("agent.unsubscribe", {"topics": ["topology"]}) == {"topics": []}
        other.call("bridge.delete", {"name": "eb"})
        assert sub.read(0.5) is None
        quiet.close()
    finally:
        sub.close()
        other.close()


def test_sigterm_exits_0_and_removes_the_socket(agent):
    agent.call("bridge.create", name="before-term")
    sub = Connection(agent.socket_path)
    sub.call("agent.subscribe", {"topics": ["*"]})
    assert os.path.exists(agent.socket_path)
    assert agent.stop(signal.SIGTERM) == 0
    assert not os.path.exists(agent.socket_path), "the socket file was left behind"
    # The agent closed the subscriber's connection (EOF after whatever was already queued).
    sub.sock.settimeout(5)
    try:
        while sub.sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    sub.close()
    assert "shutting down" in agent.log()
    agent.start()  # the lock was released
    assert [b["name"] for b in agent.call("bridge.list")["items"]] == ["before-term"]
