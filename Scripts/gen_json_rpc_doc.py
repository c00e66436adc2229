#!/usr/bin/env python3
"""Generates Docs/json-rpc.md from a live warren-agent.

Every example in the doc is a real exchange: this script starts a fresh agent (from
$WARREN_BUILD_DIR, default .build/debug; needs root like the agent's datapath), sends the
session below on one Unix-socket connection and writes what the agent answered. The
parameter tables come from `rpc.discover`, the sample output of the Python example from
running Scripts/examples/warren_client.py against a second fresh agent.

Tests/e2e/test_python_client.py checks the committed doc against a live agent (it replays
every ```jsonrpc block on a fresh agent and compares the answers, and compares the method
list and parameter tables with rpc.discover), so after an API change: run

    WARREN_BUILD_DIR=.build/debug python3 Scripts/gen_json_rpc_doc.py

and commit Docs/json-rpc.md. A method the agent has but this script does not document
makes the script fail, naming it.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "e2e"))
from warren_e2e import BUILD, Agent, Connection  # noqa: E402

DOC = ROOT / "Docs" / "json-rpc.md"
EXAMPLE = ROOT / "Scripts" / "examples" / "warren_client.py"
VM_IF, UPLINK_IF = "we-rvm1", "we-ruplink"


# ---------------------------------------------------------------------------------------
# Talking to the agent


class Session(Connection):
    """One NDJSON connection (the e2e harness's) that records exchanges as ```jsonrpc blocks."""

    def __init__(self, path: str):
        super().__init__(path)
        self.lines: list[str] = []
        self.answers = 0

    def _show(self, message, cut: int | None = None):
        if cut is not None:
            message = abridge(message, cut)
        text = json.dumps(message, ensure_ascii=False)
        if len(text) > 200:
            text = json.dumps(message, indent=2, ensure_ascii=False)
        prefix = f"(abridged: lists cut to {cut} item{'s' if cut != 1 else ''}) " if cut is not None else ""
        self.lines.append("← " + prefix + text)
        self.answers += 1

    def send_text(self, text: str, answered: bool = True, cut: int | None = None):
        self.lines.append("→ " + text)
        self.send_line(text)
        if answered:
            answer = self.answer()
            self._show(answer, cut)
            return answer
        return None

    def call(self, method: str, params: dict | None = None, cut: int | None = None):
        request = {"jsonrpc": "2.0", "id": self.take_id(), "method": method}
        if params is not None:
            request["params"] = params
        answer = self.send_text(json.dumps(request, ensure_ascii=False), cut=cut)
        return answer.get("result", answer.get("error"))

    def notify(self, method: str, params: dict):
        self.send_text(json.dumps({"jsonrpc": "2.0", "method": method, "params": params}), answered=False)

    def batch(self, calls: list[tuple[str, dict | None, bool]]):
        requests = []
        for method, params, is_call in calls:
            r = {"jsonrpc": "2.0", "method": method, "params": params or {}}
            if is_call:
                r["id"] = self.take_id()
            requests.append(r)
        return self.send_text(json.dumps(requests))

    def show_event(self):
        self._show(self.event())

    def block(self) -> str:
        text = "```jsonrpc\n" + "\n".join(self.lines) + "\n```\n"
        self.lines = []
        return text


def abridge(value, cut: int):
    if isinstance(value, list):
        return [abridge(v, cut) for v in value[:cut]]
    if isinstance(value, dict):
        return {k: abridge(v, cut) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------
# Describing schemas


def type_text(schema: dict) -> str:
    if not schema:
        return "any"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    if "oneOf" in schema or "anyOf" in schema:
        return " or ".join(type_text(s) for s in schema.get("oneOf", schema.get("anyOf")))
    t = schema.get("type")
    if isinstance(t, list):
        t = " or ".join(t)
    if t == "array":
        return "array of " + type_text(schema.get("items", {}))
    if t == "object" and "properties" in schema:
        return "object"
    if t == "object" and "additionalProperties" in schema:
        return "object of " + type_text(schema["additionalProperties"])
    text = t or "any"
    if "format" in schema:
        text += f" ({schema['format']})"
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if t == "integer" and (lo, hi) not in [(None, None), (0, None)]:
        text += f" {lo if lo is not None else ''}–{hi if hi is not None else ''}"
    return text


def fields_text(schema: dict) -> str:
    """`a`, `b`? … for an object schema's members (? = optional)."""
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    return ", ".join(f"`{k}`" + ("" if k in required else "?") for k in props)


def result_text(schema: dict, objects: dict[str, set[str]]) -> str:
    props = set(schema.get("properties", {}))
    for title, fields in objects.items():
        if props and props == fields:
            return f"a {title} (see [{title}](#{title.lower().replace(' ', '-')}))"
    if schema.get("type") == "object" and set(props) == {"items"}:
        inner = schema["properties"]["items"].get("items", {})
        for title, fields in objects.items():
            if set(inner.get("properties", {})) == fields:
                return f"`{{\"items\": [{title}, …]}}`"
        return f"`{{\"items\": [...]}}`, each with {fields_text(inner)}"
    if schema.get("type") == "object" and not props:
        return "`{}`"
    if props:
        return "an object with " + fields_text(schema)
    return type_text(schema)


# ---------------------------------------------------------------------------------------
# The prose


INTRO = """\
# Warren JSON-RPC API

<!-- Generated by Scripts/gen_json_rpc_doc.py from a live agent: edit the script, not this file.
     Tests/e2e/test_python_client.py replays every example below against a fresh agent. -->

Clouds drive `warren-agent` over [JSON-RPC 2.0](https://www.jsonrpc.org/specification).
This page is the reference for integrators: how to connect, how errors look, every method
with its parameters, result and an example, and a small Python client using only the
standard library. `warrenctl` uses the same API (`warrenctl call METHOD [JSON]` sends any
method by hand; `warrenctl call rpc.discover` prints the machine-readable
[OpenRPC](https://spec.open-rpc.org) description this page's tables are generated from).

Every example on this page is a real exchange with an agent, in order, on one
connection to a freshly started agent: `→` is what the client sent, one line each;
`←` is what the agent answered (pretty-printed here; on the wire every message is one line).
IDs (UUIDs) and generated MAC addresses differ on your agent.

## Contents

- [Transport](#transport): the Unix socket, HTTP with a bearer token, metrics, limits,
  batches, notifications, subscriptions and the `agent.event` notification
- [Errors](#errors): codes and the `data.field` convention
- [Objects](#objects): bridges, routers, ports, routes, chains
- [Methods](#methods): every method, core and plugin (`vpn.dynamic.*`, `vpn.static.*`, `labels.*`)
- [A Python client](#a-python-client)
"""

TRANSPORT = """\
## Transport

### Unix socket (NDJSON)

The agent listens on `<stateDirectory>/warren.sock` (setting `socket` in the agent's
configuration changes the path). The socket file is created with mode `0600`: only the
agent's user (root) can connect — filesystem permissions are the authentication.

Messages are newline-delimited JSON: one JSON-RPC message (or batch) per line, `\\n`
terminated, in both directions. A connection can carry any number of requests; they are
handled one at a time, in the order sent (a client may pipeline — send several requests
without waiting — and gets the answers in the same order). The agent never splits a
message over lines, so a client reads a line and parses it. Besides answers, the agent may
push `agent.event` notifications on a connection that subscribed to events (they have a
`method` and no `id`; see [Subscriptions](#subscriptions-and-agentevent)).

Params are always **by name** (an object). A method without params accepts `{}`, `null`
or no `params` member. Unknown params members are refused (-32602 naming the member), so a
misspelled optional field never silently falls back to its default.

{status_block}

Try it by hand:

```sh
echo '{"jsonrpc":"2.0","id":1,"method":"router.list"}' | socat - UNIX-CONNECT:/var/lib/warren/warren.sock
warrenctl call router.list                       # the same, with $WARREN_SOCKET or --socket
```

### HTTP with a bearer token

Optionally the agent also listens on TCP for HTTP/1.1 — configure it in the agent's
configuration file (`warren-agent --config /etc/warren/agent.json`):

```json
{"stateDirectory": "/var/lib/warren", "http": {"listen": "127.0.0.1:8787", "tokenFile": "/etc/warren/token"}}
```

The token file must hold a token of at least 16 characters and have mode `0600` (or
stricter): the agent refuses to start otherwise, naming `http.tokenFile`. Bind to a
management address, never to a tenant-reachable one.

- `POST /rpc` with `Authorization: Bearer <token>` and a JSON-RPC message (or batch) as the
  body: `200` with the JSON-RPC answer as `application/json`; `204` with no body when the
  message was a notification (or a batch of notifications only).
- `GET /metrics` with the same header: Prometheus text format (`warren_flow_lookups_total`,
  `warren_flows`, per-port `warren_port_rx_packets_total`, …).
- A missing or wrong token gets `401` (with `WWW-Authenticate: Bearer`) and the request is
  not processed at all. Other paths get `404`, other HTTP methods `405`, a body over the
  size limit `413`. The token is compared in constant time and never logged.
- HTTP carries no subscriptions (`agent.subscribe` answers -32003 there): use the socket
  for events.

```sh
TOKEN=$(cat /etc/warren/token)
curl -s -H "Authorization: Bearer $TOKEN" -d '{"jsonrpc":"2.0","id":1,"method":"router.list"}' http://127.0.0.1:8787/rpc
curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8787/metrics | grep ^warren_
```

### Request size limit

A request — a line on the socket, a body over HTTP — may be at most `maxRequestBytes`
(agent configuration; default 1 MiB = 1048576 bytes). The agent never buffers more than
that: on the socket a longer line is answered once with

```json
{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request", "data": {"reason": "request exceeds 1048576 bytes"}}, "id": null}
```

and the connection is closed (the answers to requests sent before it are delivered
first); over HTTP it is `413 Payload Too Large`. Put big configuration in several calls.

### Batches

A JSON array of requests is a batch. The agent runs its members one after another, in
order, and answers with an array holding one answer per request that has an `id` (in
the same order; notifications in a batch get none). Each member succeeds or fails on its
own — a batch is not a transaction. An empty array is an invalid request.

{batch_block}

### Notifications

A request without `id` is a notification: the agent runs it and answers nothing, not
even an error. Use them only for calls whose outcome you do not need to know.

{notify_block}

### Subscriptions and `agent.event`

On the Unix socket, `agent.subscribe` subscribes the connection to event topics. A
topic is a dotted name; subscribing to `vpn.dynamic` also receives `vpn.dynamic.*`, and
`*` receives everything. Topics published:

| topic | when | `data` |
|---|---|---|
| `topology` | after every committed change of bridges, routers, ports, routes, chains, rules | `{"change": "bridge.created" \\| "port.linked" \\| …, "version": N}` — `version` is the new topology version |
| `vpn.dynamic.config` | a DynamicVPN was created, updated or deleted | `{"vpn", "id", "change": "created" \\| "updated" \\| "deleted"}` |
| `vpn.dynamic.state` | a DynamicVPN tunnel's state changed (IKE, CHILD_SA, BGP, routes injected) | `{"vpn", "id", "tunnel", "state", "ikeState", "childState", "bgpState", "routesInjected", "reason"}` |
| `vpn.static.config` | a StaticVPN connection was created, updated or deleted | `{"vpn", "id", "change"}` |
| `vpn.static.state` | a StaticVPN connection's SAs changed state | `{"vpn", "id", "ikeState", "childState", "children": [{"name", "state"}], "reason"}` |
| `labels` | a label was set or removed | `{"resource": "kind/id", "key", "value"}` (`value` `null` when removed) |

Events arrive as JSON-RPC notifications interleaved with answers on the same connection:

```json
{"jsonrpc": "2.0", "method": "agent.event", "params": {"topic": "topology", "seq": 42, "data": {"change": "bridge.created", "version": 7}}}
```

`seq` grows by one with every event the agent publishes (to anyone), so a gap tells a
subscriber it missed events it was not subscribed to or — after a reconnect — events it
must catch up on with `topology.get`. Events are sent after the change is committed. A
subscriber must keep reading: if 1000 events queue up unread, the agent closes that
connection rather than buffer without bound. Subscriptions end with the connection.

{subscribe_block}
"""

ERRORS = """\
## Errors

Errors are JSON-RPC error objects. `message` is a short fixed text per code; the detail
is in `data`: `data.field` names the offending params member as a path (`"address"`,
`"match.dstPortMin"`, `"ipsecPairingA.peerIp"`, `"localSubnets[2]"`), `data.reason` says
what is wrong in words. A refused call changes nothing (the topology `version` stays the
same). Reasons never contain secrets (pre-shared keys, tokens).

| code | message | meaning | `data` |
|---|---|---|---|
| -32700 | Parse error | the line/body is not valid JSON (including an object with the same key twice) | `reason` |
| -32600 | Invalid Request | valid JSON but not a JSON-RPC request (no `method`, wrong `jsonrpc`, empty batch, too large) | `reason` |
| -32601 | Method not found | no such method | `method` |
| -32602 | Invalid params | a param is missing, of the wrong type, malformed or out of range, or unknown | `field`, `reason` |
| -32603 | Internal error | the agent failed (e.g. the store could not commit); nothing changed | `reason` |
| -32001 | Not found | a referenced resource does not exist | `field`, `reason` |
| -32002 | Conflict | the request conflicts with existing state (a name already in use, overlapping subnets) | `field`, `reason` |
| -32003 | Failed precondition | valid, but not possible in the current state (deleting a bridge that has ports, an interface already bound) | `field` (usually), `reason` |
| -32004 | Unavailable | a dependency is unavailable (the datapath is disabled, a daemon is down) | `reason` |

A client should branch on `code` and show `data.field` and `data.reason` to its user.

{errors_block}
"""

OBJECTS_INTRO = """\
## Objects

Every resource has an `id` (a UUID the agent assigns) and a `name` (unique per kind,
chosen by the caller). Every parameter that refers to a resource accepts either. Names
are 1–64 characters. Mutations are committed to the agent's store before they are
answered: a restarted agent comes back with exactly the acknowledged state. Every
committed change increases the topology `version` (see `topology.get`).
"""

METHODS_INTRO = """\
## Methods

Each method: what it does, its params (from `rpc.discover`; `?` in a field list marks an
optional member), its result, and an example. Methods taking a resource by `id` accept
its ID or its name in `id` (or its name in `name`).
"""

PYTHON_INTRO = """\
## A Python client

`Scripts/examples/warren_client.py` is a complete client with the standard library only
— the socket transport (with events) and the HTTP transport (with a bearer token) behind
the same `call` / `notify` / `batch` interface, and errors raised as `WarrenError` with
`code`, `field` and `reason`. Run as a script it builds a small topology — a router with
a LAN and a WAN port, a bridge for VMs linked to the router, a VM port bound to a tap
interface, a static route — and traces a TCP packet from the VM through it:

```sh
python3 Scripts/examples/warren_client.py --socket /var/lib/warren/warren.sock
python3 Scripts/examples/warren_client.py --http http://127.0.0.1:8787 --token-file /etc/warren/token
```

It prints (IDs and MACs differ):

```text
{sample_output}
```

The trace ends `pending`: the router would first resolve the gateway's MAC with the ARP
request shown as `generated`. Run it again and it stops at the first refused call
(`error: Conflict [-32002] (field name): a router named "demo-r1" already exists`, exit
status 1); `--cleanup` deletes what it built. The file:

```python
{source}```
"""


# ---------------------------------------------------------------------------------------
# Meanings of params and object fields (the types and required flags come from rpc.discover)

MEANING = {
    "name": "the resource's name, unique per kind (1–64 characters)",
    "id": "the resource's ID or name",
    "adminUp": "administratively up (default `true`); a down device or port forwards nothing",
    "macAgingSeconds": "how long learned MAC entries live (default 300)",
    "arpAgingSeconds": "how long ARP entries live (default 300)",
    "device": "the bridge or router (ID or name) the port belongs to",
    "address": "router ports: the port's address and prefix length, `\"100.64.1.1/24\"` (adds a connected route)",
    "mac": "the port's MAC address; a locally administered one is generated when omitted",
    "vlan": "bridge ports: access VLAN 1–4094 (tags are added/removed at this port); `0` in `port.update` removes it",
    "mssClamp": "clamp the TCP MSS of SYNs through this port to this value; `0` in `port.update` removes it",
    "port": "a port (ID or name)",
    "peer": "the port (ID or name, on another device) to link with",
    "interface": "the host interface (tap, veth) the port sends and receives on; it may appear later",
    "router": "a router (ID or name)",
    "destination": "the destination prefix, `\"203.0.113.0/24\"`",
    "nextHopPort": "the router port (ID or name) the route leaves through",
    "nextHopGateway": "the next hop's address on that port's subnet; omitted: the destination is on-link",
    "weight": "lower wins among routes of the same prefix length (default 100); equal weights share (ECMP)",
    "defaultAction": "what happens to a packet no rule matched (default `accept`)",
    "chain": "a chain (ID or name)",
    "action": "what a matching packet gets: `accept`, `drop`, or `reject` (TCP RST / ICMP unreachable)",
    "match": "the fields to match; omitted members match anything",
    "position": "0-based position in the chain; appended when omitted",
    "hook": "ports: `inbound` (packets entering the virtual network from the port) or `outbound`; routers: `preRouting` or `postRouting`",
    "packet": "the packet to trace; omitted fields get sensible defaults (see below)",
    "limit": "at most this many flows (default 1000)",
    "topics": "topic patterns: `\"topology\"`, `\"vpn.dynamic\"` (and everything under it), `\"*\"`",
    "resource": "the labelled resource: `{\"kind\": \"router\", \"id\": \"r1\"}` (bridge, router, port or chain; ID or name)",
    "key": "the label key",
    "value": "the label value",
    "virtualRouter": "the tenant router (ID or name) the VPN attaches to",
    "localSubnets": "the tenant subnets reachable through the VPN",
    "remoteSubnets": "the peer's subnets; they become static routes in the tenant router",
    "ipsecPairingA": "tunnel A's IPsec settings (see Docs/vpn.md)",
    "ipsecPairingB": "tunnel B's IPsec settings",
    "ipsecPairing": "the connection's IPsec settings (see Docs/vpn.md)",
    "bgpPairingA": "tunnel A's BGP session",
    "bgpPairingB": "tunnel B's BGP session",
}

FIELD_MEANING = {
    "id": "UUID assigned by the agent",
    "name": "unique per kind",
    "adminUp": "administratively up",
    "macAgingSeconds": "lifetime of learned MAC entries",
    "arpAgingSeconds": "lifetime of ARP entries",
    "ports": "the device's port names",
    "device": "ID of the bridge or router it belongs to",
    "deviceName": "its name",
    "deviceKind": "`bridge` or `router`",
    "number": "the port number, unique in the agent (used in flows)",
    "address": "router ports: address/prefix length",
    "mac": "the port's MAC address",
    "vlan": "bridge ports: access VLAN",
    "mssClamp": "TCP MSS clamp",
    "binding": "`unbound`, `interior` (linked to `peer`) or `exterior` (bound to `interface`)",
    "peer": "the linked port's ID (interior)",
    "peerName": "the linked port's name",
    "interface": "the host interface (exterior)",
    "inboundChain": "chain applied to packets entering from this port",
    "outboundChain": "chain applied to packets leaving through this port",
    "preRoutingChain": "chain applied before routing",
    "postRoutingChain": "chain applied after routing",
    "router": "ID of the router",
    "routerName": "its name",
    "destination": "destination prefix",
    "nextHopPort": "ID of the port it leaves through",
    "nextHopPortName": "its name",
    "nextHopGateway": "the next hop's address; on-link routes have none",
    "weight": "lower wins; equal weights share",
    "source": "`connected` (from a port address), `static` (route.add or a plugin), `learned` (BGP)",
    "owner": "the plugin that owns it (such routes are changed through the plugin)",
    "defaultAction": "action when no rule matches",
    "rules": "the rules in order; the first match decides (each `id`, `name`, `match`, `action`)",
    "attachedTo": "where the chain is attached (`port:hook` or `router:hook`)",
}

OBJECTS = [("Bridge object", "bridge.get"), ("Router object", "router.get"), ("Port object", "port.get"),
           ("Route object", "route.get"), ("Chain object", "chain.get")]

DYNAMIC_CREATE = {
    "name": "aws1", "virtualRouter": "r1",
    "ipsecPairingA": {"publicIp": "203.0.113.10", "peerIp": "198.51.100.10", "preSharedKey": "key.for.tunnel.A"},
    "ipsecPairingB": {"publicIp": "203.0.113.11", "peerIp": "198.51.100.11", "preSharedKey": "key.for.tunnel.B"},
    "bgpPairingA": {"localAsn": 65000, "remoteAsn": 64512, "localIp": "169.254.10.2"},
    "bgpPairingB": {"localAsn": 65000, "remoteAsn": 64512, "localIp": "169.254.11.2"},
    "localSubnets": ["100.64.1.0/24"],
}
STATIC_CREATE = {
    "name": "cs1", "virtualRouter": "r1",
    "ipsecPairing": {"publicIp": "203.0.113.20", "peerIp": "198.51.100.20", "preSharedKey": "key.for.cs1.conn"},
    "localSubnets": ["100.64.1.0/24"], "remoteSubnets": ["100.80.0.0/16"],
}


def illustrate(method: str, params: dict) -> str:
    request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return ("A complete request (not run here: it starts charon and BIRD; Docs/vpn.md walks through "
            "a real one):\n\n```json\n" + json.dumps(request, indent=2) + "\n```\n\n")


# ---------------------------------------------------------------------------------------
# The session: every method's examples, in the doc's order. Each entry: method -> function
# (Session, state) that makes the example calls; `state` carries IDs between examples.


def examples() -> dict:
    S: dict = {}

    def e(method):
        def deco(f):
            S[method] = f
            return f
        return deco

    @e("rpc.discover")
    def _(s, st):
        s.call("rpc.discover", cut=1)

    @e("agent.status")
    def _(s, st):
        s.call("agent.status")

    @e("agent.stats")
    def _(s, st):
        s.call("agent.stats")

    @e("agent.subscribe")
    def _(s, st):
        s.call("agent.subscribe", {"topics": ["topology", "vpn"]})
        s.call("agent.subscribe", {"topics": ["vpn dynamic"]})

    @e("agent.unsubscribe")
    def _(s, st):
        s.call("agent.unsubscribe", {"topics": ["topology", "vpn"]})

    @e("bridge.create")
    def _(s, st):
        st["b3"] = s.call("bridge.create", {"name": "b3", "macAgingSeconds": 600})["id"]
        s.call("bridge.create", {"name": ""})

    @e("router.create")
    def _(s, st):
        s.call("router.create", {"name": "r2", "arpAgingSeconds": 120})

    @e("bridge.get")
    def _(s, st):
        s.call("bridge.get", {"id": st["b3"]})
        s.call("bridge.get", {"name": "b9"})

    @e("router.get")
    def _(s, st):
        s.call("router.get", {"name": "r2"})

    @e("bridge.list")
    def _(s, st):
        s.call("bridge.list")

    @e("router.list")
    def _(s, st):
        s.call("router.list")

    @e("bridge.update")
    def _(s, st):
        s.call("bridge.update", {"id": "b3", "adminUp": False})

    @e("router.update")
    def _(s, st):
        s.call("router.update", {"id": "r2", "arpAgingSeconds": 60})

    @e("bridge.delete")
    def _(s, st):
        s.call("bridge.delete", {"name": "b3"})
        s.call("bridge.delete", {"id": "b2"})

    @e("router.delete")
    def _(s, st):
        s.call("router.delete", {"name": "r2"})

    @e("port.create")
    def _(s, st):
        s.call("port.create", {"device": "r1", "name": "r1-lan", "address": "100.64.1.1/24"})
        s.call("port.create", {"device": "r1", "name": "r1-wan", "address": "198.51.100.1/24", "mac": "02:00:5e:10:00:01"})
        s.call("port.create", {"device": "b1", "name": "b1-up"})
        s.call("port.create", {"device": "b1", "name": "b1-vm2", "vlan": 10})
        s.call("port.create", {"device": "r1", "name": "r1-dmz"})

    @e("port.get")
    def _(s, st):
        s.call("port.get", {"name": "r1-lan"})

    @e("port.link")
    def _(s, st):
        s.call("port.link", {"port": "r1-lan", "peer": "b1-up"})

    @e("port.bind")
    def _(s, st):
        s.call("port.bind", {"port": "b1-vm1", "interface": VM_IF})
        s.call("port.bind", {"port": "r1-wan", "interface": UPLINK_IF})
        s.call("port.bind", {"port": "b1-vm2", "interface": VM_IF})

    @e("port.unbind")
    def _(s, st):
        s.call("port.bind", {"port": "b1-vm2", "interface": "we-rvm2"})
        s.call("port.unbind", {"name": "b1-vm2"})

    @e("port.update")
    def _(s, st):
        s.call("port.update", {"id": "b1-vm2", "vlan": 0, "mssClamp": 1360})

    @e("port.list")
    def _(s, st):
        s.call("port.list", cut=2)

    @e("port.delete")
    def _(s, st):
        s.call("port.delete", {"name": "b1-vm2"})

    @e("route.add")
    def _(s, st):
        st["route"] = s.call("route.add", {"router": "r1", "destination": "203.0.113.0/24", "nextHopPort": "r1-wan",
                                           "nextHopGateway": "198.51.100.254"})["id"]
        st["route2"] = s.call("route.add", {"router": "r1", "destination": "100.96.0.0/16", "nextHopPort": "r1-lan",
                                            "nextHopGateway": "100.64.1.254", "weight": 50})["id"]
        s.call("route.add", {"router": "r1", "destination": "100.96.0.0/16", "nextHopPort": "r1-lan",
                             "nextHopGateway": "198.51.100.254"})

    @e("route.get")
    def _(s, st):
        s.call("route.get", {"id": st["route"]})

    @e("route.list")
    def _(s, st):
        s.call("route.list", {"router": "r1"})

    @e("route.delete")
    def _(s, st):
        s.call("route.delete", {"id": st["route2"], "router": "r1"})

    @e("chain.create")
    def _(s, st):
        s.call("chain.create", {"name": "web-in", "defaultAction": "drop"})

    @e("rule.add")
    def _(s, st):
        s.call("rule.add", {"chain": "web-in", "action": "accept", "name": "https",
                            "match": {"ipProto": 6, "dstPortMin": 443, "dstPortMax": 443}})
        s.call("rule.add", {"chain": "web-in", "action": "accept", "name": "ping", "position": 0,
                            "match": {"ipProto": 1}})
        s.call("rule.add", {"chain": "web-in", "action": "reject", "match": {"dstPortMin": 9000, "dstPortMax": 80}})

    @e("rule.delete")
    def _(s, st):
        s.call("rule.delete", {"chain": "web-in", "id": "ping"})

    @e("chain.attach")
    def _(s, st):
        s.call("chain.attach", {"chain": "web-in", "port": "b1-vm1", "hook": "outbound"})
        s.call("chain.attach", {"chain": "web-in", "router": "r1", "hook": "inbound"})

    @e("chain.get")
    def _(s, st):
        s.call("chain.get", {"name": "web-in"})

    @e("chain.list")
    def _(s, st):
        s.call("chain.list")

    @e("chain.delete")
    def _(s, st):
        s.call("chain.delete", {"name": "web-in"})
        s.call("chain.create", {"name": "scratch"})
        s.call("chain.delete", {"name": "scratch"})

    @e("topology.get")
    def _(s, st):
        s.call("topology.get", cut=1)

    @e("packet.trace")
    def _(s, st):
        lan_mac = s.call("port.get", {"name": "r1-lan"})["mac"]
        s.call("packet.trace", {"port": "b1-vm1", "packet": {
            "ethSrc": "02:00:00:01:00:0a", "ethDst": lan_mac, "ipSrc": "100.64.1.10", "ipDst": "203.0.113.5",
            "protocol": "tcp", "srcPort": 40000, "dstPort": 443}})
        s.call("packet.trace", {"port": "r1-wan", "packet": {
            "ipSrc": "203.0.113.5", "ipDst": "100.64.1.10", "protocol": "tcp", "srcPort": 443, "dstPort": 40000}})

    @e("flow.list")
    def _(s, st):
        s.call("flow.list", {"limit": 10})

    @e("flow.stats")
    def _(s, st):
        s.call("flow.stats")

    @e("labels.set")
    def _(s, st):
        s.call("labels.set", {"resource": {"kind": "router", "id": "r1"}, "key": "tenant", "value": "acme"})
        s.call("labels.set", {"resource": {"kind": "port", "id": "b1-vm1"}, "key": "role", "value": "web"})

    @e("labels.get")
    def _(s, st):
        s.call("labels.get", {"resource": {"kind": "router", "id": "r1"}})

    @e("labels.find")
    def _(s, st):
        s.call("labels.find", {"key": "tenant", "value": "acme"})

    @e("labels.delete")
    def _(s, st):
        s.call("labels.delete", {"resource": {"kind": "port", "id": "b1-vm1"}, "key": "role"})

    for plugin, spec, missing in [("vpn.dynamic", DYNAMIC_CREATE, "aws1"), ("vpn.static", STATIC_CREATE, "cs1")]:
        def create(s, st, plugin=plugin, spec=spec):
            bad = json.loads(json.dumps(spec))
            first = "ipsecPairingA" if "ipsecPairingA" in bad else "ipsecPairing"
            bad[first]["peerIp"] = "198.51.100.300"
            s.call(plugin + ".create", bad)
            bad = dict(spec, virtualRouter="r9")
            s.call(plugin + ".create", bad)
        S[plugin + ".create"] = create
        S[plugin + ".list"] = lambda s, st, plugin=plugin: s.call(plugin + ".list")
        S[plugin + ".status"] = lambda s, st, plugin=plugin: s.call(plugin + ".status")
        for verb in ["get", "delete", "peerConfig"]:
            S[f"{plugin}.{verb}"] = lambda s, st, m=f"{plugin}.{verb}", n=missing: s.call(m, {"id": n})
        S[plugin + ".update"] = lambda s, st, plugin=plugin, n=missing: s.call(plugin + ".update", {"id": n, "localSubnets": ["100.64.1.0/24", "100.64.2.0/24"]})
    return S


# Methods whose section shows a full (not replayed) request before the examples.
ILLUSTRATED = {"vpn.dynamic.create": DYNAMIC_CREATE, "vpn.static.create": STATIC_CREATE}

ORDER = ["rpc.discover", "agent.status", "agent.stats", "agent.subscribe", "agent.unsubscribe",
         "bridge.create", "router.create", "bridge.get", "router.get", "bridge.list", "router.list",
         "bridge.update", "router.update", "bridge.delete", "router.delete",
         "port.create", "port.get", "port.link", "port.bind", "port.unbind", "port.update", "port.list", "port.delete",
         "route.add", "route.get", "route.list", "route.delete",
         "chain.create", "rule.add", "rule.delete", "chain.attach", "chain.get", "chain.list", "chain.delete",
         "topology.get", "packet.trace", "flow.list", "flow.stats",
         "labels.set", "labels.get", "labels.find", "labels.delete"]
for _p in ["vpn.dynamic", "vpn.static"]:
    ORDER += [f"{_p}.{v}" for v in ["create", "get", "list", "status", "update", "delete", "peerConfig"]]

GROUPS = {"rpc.discover": "Agent", "bridge.create": "Bridges and routers", "port.create": "Ports",
          "route.add": "Routes", "chain.create": "Chains and rules", "topology.get": "Topology, tracing and flows",
          "labels.set": "Labels (plugin `labels`)", "vpn.dynamic.create": "DynamicVPN (plugin `vpn.dynamic`)",
          "vpn.static.create": "StaticVPN (plugin `vpn.static`)"}

EXTRA = {
    "packet.trace": "The packet is described, not sent: the agent walks it through the same "
                    "simulation the datapath runs on a flow miss, using the ARP and MAC entries the "
                    "datapath has learned, and reports each device's decision, the outcome "
                    "(`output` with ports, `drop` with reasons, `generated` packets such as ARP replies "
                    "and ICMP errors, or `pending` on ARP resolution) and the megaflow it would install. "
                    "Omitted packet fields: `ethSrc` the ingress port's side, `ethDst` the gateway router "
                    "port's MAC for an off-subnet destination from a bridge port (as a VM would address it), "
                    "`protocol` `udp`, `ttl` 64.",
    "topology.get": "`version` grows by one with every committed change and survives restarts: a "
                    "client that caches the topology compares it (or listens to `topology` events).",
    "rpc.discover": "The full document lists every method with a JSON Schema for its params and result.",
    "agent.subscribe": "See [Subscriptions](#subscriptions-and-agentevent). Unix socket only.",
    "chain.attach": "Give `port` with `inbound`/`outbound`, or `router` with `preRouting`/`postRouting`. "
                    "Omit `chain` (or pass `null`) to detach; the result is then `null`.",
}


# ---------------------------------------------------------------------------------------
# Assembling the doc


def fill(template: str, **values: str) -> str:
    for k, v in values.items():
        template = template.replace("{" + k + "}", v)
    return template


def transport_and_errors(s: Session) -> tuple[str, str]:
    s.call("agent.status")
    status_block = "The first call on a fresh agent:\n\n" + s.block()

    s.batch([("bridge.create", {"name": "b1"}, True), ("router.create", {"name": "r1"}, True),
             ("bridge.create", {"name": "b1"}, True), ("bridge.list", None, False)])
    s.send_text("[]")
    batch_block = s.block()

    s.notify("bridge.update", {"id": "b1", "macAgingSeconds": 120})
    s.call("bridge.get", {"name": "b1"})
    notify_block = s.block()

    s.call("agent.subscribe", {"topics": ["topology"]})
    s.call("bridge.create", {"name": "b2"})
    s.show_event()
    s.call("agent.unsubscribe", {"topics": ["topology"]})
    subscribe_block = s.block()
    transport = fill(TRANSPORT, status_block=status_block.rstrip("\n"), batch_block=batch_block.rstrip("\n"),
                                 notify_block=notify_block.rstrip("\n"), subscribe_block=subscribe_block.rstrip("\n"))

    s.send_text('{"jsonrpc": "2.0", "id": %d, "method": "bridge.list"' % s.take_id())
    s.send_text('{"jsonrpc": "2.0", "id": %d, "params": {}}' % s.take_id())
    s.call("bridge.frobnicate", {})
    s.call("port.create", {"device": "r1", "name": "r1-lan", "address": "100.64.1.1/33"})
    s.call("bridge.create", {"name": 7})
    s.call("bridge.create", {"name": "b5", "macAging": 60})
    s.call("port.create", {"device": "r7", "name": "r7-lan", "address": "100.64.7.1/24"})
    s.call("router.create", {"name": "r1"})
    s.call("port.create", {"device": "b1", "name": "b1-vm1"})
    s.call("bridge.delete", {"name": "b1"})
    errors = fill(ERRORS, errors_block=s.block().rstrip("\n"))
    return transport, errors


def objects_section(methods: dict) -> tuple[str, dict[str, set[str]]]:
    out = [OBJECTS_INTRO]
    fields_by_title: dict[str, set[str]] = {}
    for title, method in OBJECTS:
        schema = methods[method]["result"]["schema"]
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        fields_by_title[title] = set(props)
        out.append(f"\n### {title}\n\nReturned by `{method}` and the other {method.split('.')[0]} methods.\n\n"
                   "| field | type | meaning |\n|---|---|---|\n")
        for k, v in props.items():
            optional = "" if k in required else " (omitted when not set)"
            out.append(f"| `{k}` | {type_text(v)} | {FIELD_MEANING.get(k, '')}{optional} |\n")
    return "".join(out), fields_by_title


def method_section(m: dict, objects: dict[str, set[str]]) -> str:
    name = m["name"]
    out = [f"### `{name}`\n\n{m['summary']}"]
    if name in EXTRA:
        out.append(" " + EXTRA[name])
    out.append("\n\n")
    if m["params"]:
        out.append("| param | type | required | meaning |\n|---|---|---|---|\n")
        for p in m["params"]:
            schema = p["schema"]
            meaning = MEANING.get(p["name"], "")
            if schema.get("type") == "object" and schema.get("properties"):
                meaning = (meaning + "; " if meaning else "") + "members " + fields_text(schema)
            out.append(f"| `{p['name']}` | {type_text(schema)} | {'yes' if p['required'] else 'no'} | {meaning} |\n")
        out.append("\n")
    else:
        out.append("No params.\n\n")
    out.append(f"Result: {result_text(m['result']['schema'], objects)}.\n\n")
    return "".join(out)


def run_example(socket_path: str) -> str:
    p = subprocess.run([sys.executable, str(EXAMPLE), "--socket", socket_path, "--vm-interface", VM_IF,
                        "--uplink-interface", UPLINK_IF], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise SystemExit(f"the example failed ({p.returncode}): {p.stdout}{p.stderr}")
    return p.stdout


def main() -> int:
    agent = Agent()
    try:
        agent.start()
        discover = subprocess.run([str(BUILD / "warrenctl"), "call", "rpc.discover", "--socket", agent.socket_path],
                                  capture_output=True, text=True, check=True).stdout
        methods = {m["name"]: m for m in json.loads(discover)["methods"]}
        missing = sorted(set(methods) - set(ORDER))
        if missing:
            raise SystemExit(f"methods without examples in Scripts/gen_json_rpc_doc.py: {missing}")
        gone = sorted(set(ORDER) - set(methods))
        if gone:
            raise SystemExit(f"the agent no longer has: {gone}")
        calls = examples()
        state: dict = {}
        s = Session(agent.socket_path)
        transport, errors = transport_and_errors(s)
        objects, fields = objects_section(methods)
        parts = [INTRO, "\n", transport, "\n", errors, "\n", objects, "\n", METHODS_INTRO]
        for name in ORDER:
            if name in GROUPS:
                parts.append(f"\n**{GROUPS[name]}**\n")
            parts.append("\n" + method_section(methods[name], fields))
            if name in ILLUSTRATED:
                parts.append(illustrate(name, ILLUSTRATED[name]))
            calls[name](s, state)
            parts.append("Example:\n\n" + s.block())
        print(f"{s.answers} answers recorded", file=sys.stderr)
    finally:
        agent.cleanup()

    fresh = Agent()
    try:
        fresh.start()
        sample = run_example(fresh.socket_path)
    finally:
        fresh.cleanup()
    source = EXAMPLE.read_text()
    parts.append("\n" + PYTHON_INTRO.replace("{sample_output}", sample.rstrip("\n")).replace("{source}", source))
    DOC.write_text("".join(parts))
    print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
