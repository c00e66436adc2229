"""Docs/json-rpc.md and Scripts/examples/warren_client.py against a real agent.

- The Python example (standard library only) builds a topology and traces a packet over
  the Unix socket and over HTTP with a bearer token; its output and the agent's state are
  checked. A refused call makes it exit non-zero with the agent's error, changing nothing.
- The doc's copy of the example is the file, byte for byte; its sample output is what
  the example prints (IDs and MACs aside).
- Every method `rpc.discover` (through `warrenctl call rpc.discover`) reports has a section
  in the doc whose parameter table lists exactly the method's params and which are
  required; the doc documents no method that does not exist; the object tables list the
  fields the API returns.
- The doc's examples are replayed, in order, on one connection to a fresh agent: every
  answer must equal the one printed (UUIDs and generated MACs are matched consistently,
  not literally; uptimes, paths and sequence numbers by type only).
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from warren_e2e import BUILD, ROOT, Agent, Connection, run

DOC = ROOT / "Docs" / "json-rpc.md"
EXAMPLE = ROOT / "Scripts" / "examples" / "warren_client.py"
# Interfaces the examples bind ports to: names of this suite's prefix that do not exist,
# so the datapath only waits for them and never touches a real interface.
VM_IF, UPLINK_IF = "we-rvm1", "we-ruplink"

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAC_RE = re.compile(r"\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b")
# Values that differ from run to run by nature: compared by type only.
TYPE_ONLY = {"uptimeSeconds", "stateDirectory", "socket", "seq", "ageSeconds", "idleSeconds", "flowMemoryBytes"}


# ---------------------------------------------------------------------------------------
# Doc parsing


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(r"^```" + re.escape(language) + r"\n(.*?)^```$", text, re.S | re.M)


def exchanges(block: str) -> list[tuple[str, str, int | None]]:
    """[(direction "→"/"←", text, abridged list length or None)] of one ```jsonrpc block."""
    out: list[tuple[str, str, int | None]] = []
    for line in block.splitlines():
        if line.startswith("→ ") or line.startswith("← "):
            text, cut = line[2:], None
            m = re.match(r"\(abridged: lists cut to (\d+) items?\) ", text)
            if m:
                text, cut = text[m.end():], int(m.group(1))
            out.append((line[0], text, cut))
        else:
            assert out, f"text before the first →/← line in a jsonrpc block: {line!r}"
            d, text, cut = out[-1]
            out[-1] = (d, text + "\n" + line, cut)
    return out


def method_sections(text: str) -> dict[str, str]:
    """{method: section text} for every '### `method`' heading."""
    parts = re.split(r"^### `([a-z.A-Z]+)`\n", text, flags=re.M)
    return {parts[i]: parts[i + 1].split("\n## ")[0].split("\n### ")[0] for i in range(1, len(parts), 2)}


def param_rows(section: str) -> list[tuple[str, bool]]:
    """[(param, required)] from a section's '| param | type | required | meaning |' table."""
    rows = []
    in_table = False
    for line in section.splitlines():
        if line.startswith("| param | type | required |"):
            in_table = True
            continue
        if in_table:
            if not line.startswith("|"):
                break
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set(cells[0]) <= {"-"}:
                continue
            rows.append((cells[0].strip("`"), {"yes": True, "no": False}[cells[2]]))
    return rows


def object_fields(text: str, title: str) -> set[str]:
    section = text.split(f"### {title}\n", 1)[1].split("\n#")[0]
    fields: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            fields |= set(re.findall(r"`([A-Za-z]+)`", line.split("|")[1]))
    return fields


# ---------------------------------------------------------------------------------------
# Comparing answers


class Matcher:
    """Compares documented values with real ones, matching UUIDs and MACs as a bijection."""

    def __init__(self):
        self.forward: dict[str, str] = {}
        self.backward: dict[str, str] = {}

    def _bind(self, doc: str, real: str, path: str):
        if self.forward.get(doc, real) != real or self.backward.get(real, doc) != doc:
            raise AssertionError(f"{path}: {doc} was {self.forward.get(doc)} earlier in the session, now {real}")
        self.forward[doc], self.backward[real] = real, doc

    def string(self, doc: str, real: str, path: str):
        tokens_doc = UUID_RE.findall(doc) + MAC_RE.findall(doc)
        tokens_real = UUID_RE.findall(real) + MAC_RE.findall(real)
        assert len(tokens_doc) == len(tokens_real), f"{path}: documented {doc!r}, got {real!r}"
        for d, r in zip(tokens_doc, tokens_real):
            self._bind(d, r, path)
        assert UUID_RE.sub("U", MAC_RE.sub("M", doc)) == UUID_RE.sub("U", MAC_RE.sub("M", real)), \
            f"{path}: documented {doc!r}, got {real!r}"

    def value(self, doc, real, path: str = "$", cut: int | None = None):
        key = path.rsplit(".", 1)[-1]
        if key in TYPE_ONLY:
            assert type(doc) is type(real) or {type(doc), type(real)} <= {int, float}, f"{path}: type {type(real)}"
            return
        if isinstance(doc, dict):
            assert isinstance(real, dict), f"{path}: documented an object, got {real!r}"
            if cut is None:
                assert set(doc) == set(real), f"{path}: documented keys {sorted(doc)}, got {sorted(real)}"
            else:
                assert set(doc) <= set(real), f"{path}: documented keys {sorted(set(doc) - set(real))} are missing"
            for k in doc:
                self.value(doc[k], real[k], f"{path}.{k}", cut)
        elif isinstance(doc, list):
            assert isinstance(real, list), f"{path}: documented an array, got {real!r}"
            if cut is None:
                assert len(doc) == len(real), f"{path}: documented {len(doc)} items, got {len(real)}: {real!r}"
            else:
                assert len(doc) == min(cut, len(real)), f"{path}: abridged to {len(doc)} items, got {len(real)}"
            for i, (d, r) in enumerate(zip(doc, real)):
                self.value(d, r, f"{path}[{i}]", cut)
        elif isinstance(doc, str):
            assert isinstance(real, str), f"{path}: documented {doc!r}, got {real!r}"
            self.string(doc, real, path)
        else:
            assert doc == real and type(doc) is type(real), f"{path}: documented {doc!r}, got {real!r}"

    def substitute(self, text: str) -> str:
        """A documented request with the real IDs and MACs of this session."""
        return UUID_RE.sub(lambda m: self.forward.get(m.group(0), m.group(0)),
                           MAC_RE.sub(lambda m: self.forward.get(m.group(0), m.group(0)), text))


def expects_answer(text: str) -> bool:
    try:
        message = json.loads(text)
    except ValueError:
        return True  # a parse error is answered
    if isinstance(message, list):
        return not message or any(not isinstance(m, dict) or "id" in m for m in message)
    return not isinstance(message, dict) or "id" in message


def replay(doc_text: str, socket_path: str) -> int:
    """Replays every ```jsonrpc block in order; returns the number of answers checked."""
    matcher = Matcher()
    conn = Connection(socket_path)
    checked = 0
    try:
        for block in code_blocks(doc_text, "jsonrpc"):
            pending: list = []  # answers received for the requests of this block, not yet compared
            for direction, text, cut in exchanges(block):
                if direction == "→":
                    request = matcher.substitute(text)
                    try:
                        request = json.dumps(json.loads(request))
                    except ValueError:
                        request = request.strip()  # sent as written: it is meant to be invalid
                    conn.send_line(request)
                    if expects_answer(text):
                        pending.append(conn.answer())
                    continue
                documented = json.loads(text)
                if isinstance(documented, dict) and documented.get("method") == "agent.event":
                    real = conn.event()
                else:
                    assert pending, f"the doc shows an answer no request of the block produced: {text[:200]}"
                    real = pending.pop(0)
                try:
                    matcher.value(documented, real, cut=cut)
                except AssertionError as e:
                    raise AssertionError(f"{e}\n  documented: {text[:400]}\n  real: {json.dumps(real)[:400]}") from None
                checked += 1
            assert not pending, f"answers not shown in the doc: {pending}"
    finally:
        conn.close()
    return checked


# ---------------------------------------------------------------------------------------
# The example script


def run_example(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return run([sys.executable, str(EXAMPLE), "--vm-interface", VM_IF, "--uplink-interface", UPLINK_IF, *args],
               check=False, timeout=timeout)


def check_example_output(out: str, agent: Agent):
    """The printed trace is the agent's, and the topology is what the example says it built."""
    lines = out.splitlines()
    assert re.fullmatch(r"warren-agent \d+\.\d+\.\d+, topology version \d+", lines[0]), lines[0]
    topo = agent.call("topology.get")
    routers = {r["name"]: r for r in topo["routers"]}
    ports = {p["name"]: p for p in topo["ports"]}
    assert f"router demo-r1 {routers['demo-r1']['id']}" in lines
    assert any(line.startswith("bridge demo-b1 ") for line in lines)
    assert ports["demo-r1-lan"]["peerName"] == "demo-b1-up" and ports["demo-b1-up"]["binding"] == "interior"
    assert ports["demo-vm1"]["interface"] == VM_IF and ports["demo-r1-wan"]["interface"] == UPLINK_IF
    assert f"port demo-r1-lan on demo-r1 mac {ports['demo-r1-lan']['mac']} address 100.64.10.1/24" in lines
    static = [r for r in topo["routes"] if r["source"] == "static"]
    assert [(r["destination"], r["nextHopPortName"], r["nextHopGateway"]) for r in static] == \
        [("203.0.113.0/24", "demo-r1-wan", "198.51.100.254")]
    assert "route 203.0.113.0/24 via demo-r1-wan gateway 198.51.100.254" in lines

    trace = agent.call("packet.trace", port="demo-vm1", packet={
        "ethSrc": "02:00:00:0a:00:0a", "ethDst": ports["demo-r1-lan"]["mac"], "ipSrc": "100.64.10.10",
        "ipDst": "203.0.113.5", "protocol": "tcp", "srcPort": 40000, "dstPort": 443})
    i = lines.index(f"trace: {trace['packet']}")
    steps = lines[i + 1:i + 1 + len(trace["steps"])]
    assert steps == [f"  {n}. {s['deviceKind']} {s['device']} (in {s['port']}): {s['decision']}"
                     for n, s in enumerate(trace["steps"], 1)], steps
    assert [s["device"] for s in trace["steps"]] == ["demo-b1", "demo-r1", "demo-r1"]
    assert "route 203.0.113.0/24 (static) via port demo-r1-wan gateway 198.51.100.254" in steps[1]
    assert lines[i + 1 + len(trace["steps"])] == \
        "result: pending (waiting for ARP resolution of 198.51.100.254 on port demo-r1-wan)"
    assert any(re.fullmatch(r"generated on demo-r1-wan: \S+ > ff:ff:ff:ff:ff:ff ARP who-has 198\.51\.100\.254 "
                            r"tell 198\.51\.100\.1", line) for line in lines), out


def test_example_over_unix_socket(agent):
    p = run_example("--socket", agent.socket_path)
    assert p.returncode == 0, p.stdout + p.stderr
    check_example_output(p.stdout, agent)

    # Run again: the names exist. The example reports the agent's error and exits 1;
    # the refused call changed nothing.
    version = agent.call("topology.get")["version"]
    p = run_example("--socket", agent.socket_path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert 'error: Conflict [-32002] (field name): a router named "demo-r1" already exists' in p.stderr, p.stderr
    assert agent.call("topology.get")["version"] == version

    # No agent there: a transport error, exit 2.
    p = run_example("--socket", agent.socket_path + ".missing")
    assert p.returncode == 2 and "cannot talk to the agent" in p.stderr, p.stdout + p.stderr


def test_example_cleanup_leaves_nothing(agent):
    p = run_example("--socket", agent.socket_path, "--cleanup")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[-1] == "deleted the demo topology"
    topo = agent.call("topology.get")
    assert (topo["bridges"], topo["routers"], topo["ports"], topo["routes"]) == ([], [], [], []), topo


def http_agent(tmp_path) -> tuple[Agent, str, str]:
    token = "t0k3n-" + os.urandom(12).hex()
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    a = Agent(config={"http": {"listen": f"127.0.0.1:{port}", "tokenFile": str(token_file)}})
    return a, f"http://127.0.0.1:{port}", str(token_file)


def test_example_over_http_with_token(tmp_path):
    a, url, token_file = http_agent(tmp_path)
    try:
        a.start()
        p = run_example("--http", url, "--token-file", token_file)
        assert p.returncode == 0, p.stdout + p.stderr
        check_example_output(p.stdout, a)
        # A wrong token is refused by HTTP (401) before any JSON-RPC processing.
        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-token-at-all\n")
        version = a.call("topology.get")["version"]
        p = run_example("--http", url, "--token-file", str(wrong), "--cleanup")
        assert p.returncode == 2 and "refused the bearer token (HTTP 401)" in p.stderr, p.stdout + p.stderr
        assert a.call("topology.get")["version"] == version
        assert "not-the-token-at-all" not in a.log() and Path(token_file).read_text().strip() not in a.log()
    finally:
        a.cleanup()


# ---------------------------------------------------------------------------------------
# The doc


def test_doc_example_is_the_file():
    doc = DOC.read_text()
    sources = [b for b in code_blocks(doc, "python") if b.startswith("#!/usr/bin/env python3")]
    assert len(sources) == 1, "Docs/json-rpc.md must hold the example file once, in a ```python block"
    assert sources[0] == EXAMPLE.read_text(), "Docs/json-rpc.md's copy of warren_client.py differs from the file"


def test_doc_sample_output_is_what_the_example_prints(agent):
    doc = DOC.read_text()
    block = doc.split("It prints (IDs and MACs differ):\n\n```text\n", 1)[1].split("\n```", 1)[0]
    p = run_example("--socket", agent.socket_path)
    assert p.returncode == 0, p.stdout + p.stderr
    documented, real = block.splitlines(), p.stdout.splitlines()
    assert len(documented) == len(real), f"documented:\n{block}\nprinted:\n{p.stdout}"
    matcher = Matcher()
    for d, r in zip(documented, real):
        matcher.string(d, r, "output")


def discover(agent) -> dict:
    p = run([str(BUILD / "warrenctl"), "call", "rpc.discover", "--socket", agent.socket_path])
    return json.loads(p.stdout)


def test_doc_documents_every_registered_method(agent):
    doc = DOC.read_text()
    methods = {m["name"]: m for m in discover(agent)["methods"]}
    sections = method_sections(doc.split("\n## Methods\n", 1)[1].split("\n## A Python client\n")[0])
    missing = sorted(set(methods) - set(sections))
    assert not missing, f"registered methods missing from Docs/json-rpc.md: {missing}"
    unknown = sorted(set(sections) - set(methods))
    assert not unknown, f"Docs/json-rpc.md documents methods the agent does not have: {unknown}"
    for name, m in methods.items():
        documented = param_rows(sections[name])
        real = [(p["name"], p["required"]) for p in m["params"]]
        if not real:
            assert "No params" in sections[name] and not documented, f"{name}: takes no params; the doc must say so"
            continue
        assert sorted(documented) == sorted(real), f"{name}: the doc's params {documented} != rpc.discover's {real}"
        assert f'"method": "{name}"' in sections[name], f"{name}: the doc has no example call"


def test_doc_object_tables_list_the_returned_fields(agent):
    doc = DOC.read_text()
    methods = {m["name"]: m for m in discover(agent)["methods"]}
    for title, method in [("Bridge object", "bridge.get"), ("Router object", "router.get"),
                          ("Port object", "port.get"), ("Route object", "route.get"), ("Chain object", "chain.get")]:
        real = set(methods[method]["result"]["schema"]["properties"])
        assert object_fields(doc, title) == real, f"{title}: the doc lists {sorted(object_fields(doc, title))}, " \
                                                  f"{method} returns {sorted(real)}"


def test_doc_examples_replay_against_a_fresh_agent(agent):
    checked = replay(DOC.read_text(), agent.socket_path)
    assert checked >= 90, f"only {checked} documented answers were checked"
    # The session's side effects are real: the replayed topology is there.
    names = {p["name"] for p in agent.call("port.list")["items"]}
    assert {"r1-lan", "r1-wan", "b1-up", "b1-vm1"} <= names, names


def test_replay_notices_a_wrong_answer(agent):
    """The replay is a real check: a doc with one changed value fails it."""
    doc = DOC.read_text()
    wrong = doc.replace('"macAgingSeconds": 120', '"macAgingSeconds": 121', 1)
    assert wrong != doc
    try:
        replay(wrong, agent.socket_path)
    except AssertionError as e:
        assert "macAgingSeconds" in str(e) and "121" in str(e), e
    else:
        raise AssertionError("a documented answer that differs from the agent's passed the replay")
