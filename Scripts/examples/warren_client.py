#!/usr/bin/env python3
"""A Warren JSON-RPC client using only Python's standard library.

It speaks both transports of warren-agent:
- the Unix socket (newline-delimited JSON, one message per line; events are pushed on it);
- HTTP `POST /rpc` with `Authorization: Bearer <token>` on the optional TCP listener.

Run as a script, it builds a small topology — a router with a LAN and a WAN port, a
bridge for the VMs linked to the router, a VM port, a static route — and traces a TCP
packet from the VM through it, printing every step:

    python3 warren_client.py                          # socket from $WARREN_SOCKET or the default
    python3 warren_client.py --http http://127.0.0.1:8787 --token-file /etc/warren/token
    python3 warren_client.py --cleanup                # delete the demo topology afterwards
"""
import argparse
import itertools
import json
import os
import select
import socket
import sys
import urllib.error
import urllib.request


class WarrenError(Exception):
    """A JSON-RPC error answered by the agent: code, message, and data.field / data.reason."""

    def __init__(self, error):
        self.code = error.get("code")
        self.message = error.get("message", "")
        self.data = error.get("data") or {}
        self.field = self.data.get("field")
        self.reason = self.data.get("reason")
        where = f" (field {self.field})" if self.field else ""
        super().__init__(f"{self.message} [{self.code}]{where}: {self.reason or self.data}")


class UnixClient:
    """One connection to the agent's Unix socket. Calls are answered in the order sent."""

    def __init__(self, path=None, timeout=30.0):
        self.path = path or os.environ.get("WARREN_SOCKET", "/var/lib/warren/warren.sock")
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(self.path)
        self.buffer = b""
        self.events = []  # agent.event notifications received while waiting for a response
        self.ids = itertools.count(1)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, message):
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def _read_message(self, timeout):
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return None
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the agent closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def _wait_for(self, is_answer):
        while True:
            message = self._read_message(self.timeout)
            if message is None:
                raise TimeoutError(f"no answer within {self.timeout} s")
            if isinstance(message, dict) and "method" in message and "id" not in message:
                self.events.append(message)  # a pushed notification, not our answer
            elif is_answer(message):
                return message

    def call(self, method, params=None):
        """Calls `method` with named params; returns the result or raises WarrenError."""
        request = {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params or {}}
        self._send(request)
        response = self._wait_for(lambda m: isinstance(m, dict) and m.get("id") in (request["id"], None))
        if "error" in response:
            raise WarrenError(response["error"])
        return response["result"]

    def notify(self, method, params=None):
        """A notification: the agent runs it and sends nothing back."""
        self._send({"jsonrpc": "2.0", "method": method, "params": params or {}})

    def batch(self, calls):
        """Sends [(method, params), ...] as one batch; returns results or WarrenErrors, in order."""
        requests = [{"jsonrpc": "2.0", "id": next(self.ids), "method": m, "params": p or {}} for m, p in calls]
        self._send(requests)
        responses = self._wait_for(lambda m: isinstance(m, list) or (isinstance(m, dict) and m.get("id") is None))
        if isinstance(responses, dict):
            raise WarrenError(responses["error"])  # the batch as a whole was refused
        by_id = {r.get("id"): r for r in responses}
        return [WarrenError(by_id[r["id"]]["error"]) if "error" in by_id[r["id"]] else by_id[r["id"]]["result"]
                for r in requests]

    def subscribe(self, *topics):
        """Subscribes this connection to event topics ("topology", "vpn.dynamic", "*")."""
        return self.call("agent.subscribe", {"topics": list(topics)})["topics"]

    def next_event(self, timeout=None):
        """The next agent.event's params ({"topic", "seq", "data"}), or None after `timeout` s."""
        while not self.events:
            message = self._read_message(timeout)
            if message is None:
                return None
            if isinstance(message, dict) and message.get("method") == "agent.event":
                self.events.append(message)
        return self.events.pop(0)["params"]


class HTTPClient:
    """JSON-RPC over HTTP POST /rpc with a bearer token (no subscriptions on HTTP)."""

    def __init__(self, url, token, timeout=30.0):
        self.url = url.rstrip("/") + "/rpc"
        self.token = token
        self.timeout = timeout
        self.ids = itertools.count(1)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def _post(self, payload):
        request = urllib.request.Request(self.url, data=json.dumps(payload).encode(), method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            if e.code == 401:
                raise PermissionError("the agent refused the bearer token (HTTP 401)") from None
            raise ConnectionError(f"HTTP {e.code} from {self.url}") from None
        return json.loads(body) if body else None

    def call(self, method, params=None):
        response = self._post({"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params or {}})
        if "error" in response:
            raise WarrenError(response["error"])
        return response["result"]

    def notify(self, method, params=None):
        self._post({"jsonrpc": "2.0", "method": method, "params": params or {}})

    def batch(self, calls):
        requests = [{"jsonrpc": "2.0", "id": next(self.ids), "method": m, "params": p or {}} for m, p in calls]
        responses = self._post(requests)
        if isinstance(responses, dict):
            raise WarrenError(responses["error"])
        by_id = {r.get("id"): r for r in responses}
        return [WarrenError(by_id[r["id"]]["error"]) if "error" in by_id[r["id"]] else by_id[r["id"]]["result"]
                for r in requests]


def build_demo(client, vm_interface, uplink_interface):
    """A tenant router r1 with a LAN (100.64.10.0/24, on bridge b1) and a WAN port, and a route."""
    router = client.call("router.create", {"name": "demo-r1"})
    print(f"router {router['name']} {router['id']}")
    bridge = client.call("bridge.create", {"name": "demo-b1"})
    print(f"bridge {bridge['name']} {bridge['id']}")
    lan = client.call("port.create", {"device": "demo-r1", "name": "demo-r1-lan", "address": "100.64.10.1/24"})
    wan = client.call("port.create", {"device": "demo-r1", "name": "demo-r1-wan", "address": "198.51.100.1/24"})
    up = client.call("port.create", {"device": "demo-b1", "name": "demo-b1-up"})
    vm = client.call("port.create", {"device": "demo-b1", "name": "demo-vm1"})
    for p in (lan, wan, up, vm):
        print(f"port {p['name']} on {p['deviceName']} mac {p['mac']} address {p.get('address', '-')}")
    client.call("port.link", {"port": "demo-r1-lan", "peer": "demo-b1-up"})
    print("linked demo-r1-lan <-> demo-b1-up")
    client.call("port.bind", {"port": "demo-vm1", "interface": vm_interface})
    client.call("port.bind", {"port": "demo-r1-wan", "interface": uplink_interface})
    print(f"bound demo-vm1 to {vm_interface}, demo-r1-wan to {uplink_interface}")
    route = client.call("route.add", {"router": "demo-r1", "destination": "203.0.113.0/24",
                                      "nextHopPort": "demo-r1-wan", "nextHopGateway": "198.51.100.254"})
    print(f"route {route['destination']} via {route['nextHopPortName']} gateway {route['nextHopGateway']}")
    return lan["mac"]


def trace_demo(client, router_mac):
    """Traces TCP 100.64.10.10:40000 -> 203.0.113.5:443 entering at the VM's port."""
    packet = {"ethSrc": "02:00:00:0a:00:0a", "ethDst": router_mac, "ipSrc": "100.64.10.10",
              "ipDst": "203.0.113.5", "protocol": "tcp", "srcPort": 40000, "dstPort": 443}
    trace = client.call("packet.trace", {"port": "demo-vm1", "packet": packet})
    print(f"trace: {trace['packet']}")
    for i, step in enumerate(trace["steps"], 1):
        print(f"  {i}. {step['deviceKind']} {step['device']} (in {step['port']}): {step['decision']}")
    result = trace["result"]
    outcome = result["kind"] + (" to " + ", ".join(result["ports"]) if result["ports"] else "")
    print(f"result: {outcome}" + (f" ({'; '.join(result['reasons'])})" if result["reasons"] else ""))
    for g in result["generated"]:
        print(f"generated on {g['port']}: {g['summary']}")
    print(f"flow: {trace['match']}")
    return trace


def delete_demo(client):
    """Routes first (a port with routes through it is refused), then ports, then devices."""
    for route in client.call("route.list", {"router": "demo-r1"})["items"]:
        if route["source"] == "static":
            client.call("route.delete", {"id": route["id"]})
    for port in ("demo-vm1", "demo-b1-up", "demo-r1-lan", "demo-r1-wan"):
        client.call("port.delete", {"name": port})
    client.call("bridge.delete", {"name": "demo-b1"})
    client.call("router.delete", {"name": "demo-r1"})
    print("deleted the demo topology")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Build a small Warren topology and trace a packet through it.")
    parser.add_argument("--socket", help="the agent's Unix socket (default: $WARREN_SOCKET or /var/lib/warren/warren.sock)")
    parser.add_argument("--http", help="use HTTP instead, e.g. http://127.0.0.1:8787")
    parser.add_argument("--token-file", help="file holding the bearer token (with --http)")
    parser.add_argument("--vm-interface", default="tap-demo-vm1", help="host interface for the VM port")
    parser.add_argument("--uplink-interface", default="demo-uplink", help="host interface for the WAN port")
    parser.add_argument("--cleanup", action="store_true", help="delete the demo topology at the end")
    args = parser.parse_args(argv)
    try:
        if args.http:
            if not args.token_file:
                parser.error("--http needs --token-file")
            with open(args.token_file) as f:
                client = HTTPClient(args.http, f.read().strip())
        else:
            client = UnixClient(args.socket)
        with client:
            status = client.call("agent.status")
            print(f"warren-agent {status['version']}, topology version {status['topologyVersion']}")
            router_mac = build_demo(client, args.vm_interface, args.uplink_interface)
            trace_demo(client, router_mac)
            if args.cleanup:
                delete_demo(client)
    except WarrenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"error: cannot talk to the agent: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
