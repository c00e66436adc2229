"""802.1Q through a real bridge: a trunk VM sends tagged frames, an access-port VM in
VLAN 10 gets them untagged, and the other way round; VLAN 20 stays apart.

The kernel here has no 802.1Q devices, so the VMs speak raw frames through AF_PACKET
sockets; receivers ask for PACKET_AUXDATA because the kernel strips a received tag
into metadata (Warren's datapath does the same to see tags).
"""
from __future__ import annotations

import json
import textwrap

from warren_e2e import wait_until

RAW = textwrap.dedent('''
    import json, socket, struct, sys, time
    mode, ifname = sys.argv[1], "eth0"
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((ifname, 0))
    if mode == "send":
        frames = json.loads(sys.argv[2])
        for f in frames:
            s.send(bytes.fromhex(f))
            time.sleep(0.01)
    else:
        s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA
        s.settimeout(float(sys.argv[2]))
        got = []
        try:
            while True:
                data, anc, flags, addr = s.recvmsg(4096, 256)
                if addr[2] == socket.PACKET_OUTGOING:
                    continue
                tci = None
                for level, kind, payload in anc:
                    if level == 263 and kind == 8:
                        status, _, _, _, _, vtci, vtpid = struct.unpack("IIIHHHH", payload[:20])
                        if status & 0x10:
                            tci = vtci
                if data[12:14] == b"\\x88\\xb5":
                    got.append({"tci": tci, "payload": data[14:30].hex()})
        except socket.timeout:
            pass
        print(json.dumps(got))
''')


def frame(dst: str, src: str, vlan: int | None, marker: int) -> str:
    tag = f"8100{vlan:04x}" if vlan is not None else ""
    payload = f"{marker:032x}"  # 16 bytes that identify the frame
    body = dst.replace(":", "") + src.replace(":", "") + tag + "88b5" + payload
    return body + "00" * max(0, 60 - len(body) // 2)


def test_access_and_trunk_ports(agent, hosts):
    agent.call("bridge.create", name="vb")
    trunk = hosts.vm("vt", mac="02:00:00:00:0a:01")
    acc10 = hosts.vm("v10", mac="02:00:00:00:0a:10")
    acc20 = hosts.vm("v20", mac="02:00:00:00:0a:20")
    for vm, name, vlan in [(trunk, "vt", None), (acc10, "v10", 10), (acc20, "v20", 20)]:
        params = {"device": "vb", "name": name}
        if vlan:
            params["vlan"] = vlan
        agent.call("port.create", params)
        agent.call("port.bind", port=name, interface=vm.host_if)
    wait_until(lambda: all(p["state"] == "up" for p in agent.call("agent.status")["datapath"]["ports"]), timeout=10,
               what="ports up")
    for vm in (trunk, acc10, acc20):
        vm.exec(["sh", "-c", f"cat > /tmp/raw.py <<'EOF'\n{RAW}\nEOF"])

    def exchange(sender, frames, receivers):
        procs = {r.ns: r.spawn(["python3", "/tmp/raw.py", "recv", "2"]) for r in receivers}
        import time
        time.sleep(0.5)
        sender.exec(["python3", "/tmp/raw.py", "send", json.dumps(frames)])
        return {ns: json.loads(p.communicate(timeout=20)[0] or "[]") for ns, p in procs.items()}

    # Trunk → VLAN 10 (tagged 10, broadcast): only the VLAN 10 access port gets it, untagged.
    got = exchange(trunk, [frame("ff:ff:ff:ff:ff:ff", "02:00:00:00:0a:01", 10, 1)], [acc10, acc20])
    assert got[acc10.ns] == [{"tci": None, "payload": f"{1:032x}"}], got
    assert got[acc20.ns] == [], "VLAN 20 does not see VLAN 10"
    # VLAN 10 access → trunk: arrives tagged 10 (known unicast after learning the trunk MAC).
    got = exchange(acc10, [frame("02:00:00:00:0a:01", "02:00:00:00:0a:10", None, 2)], [trunk, acc20])
    assert got[trunk.ns] == [{"tci": 10, "payload": f"{2:032x}"}], got
    assert got[acc20.ns] == []
    # A tagged frame on an access port is dropped.
    got = exchange(acc20, [frame("ff:ff:ff:ff:ff:ff", "02:00:00:00:0a:20", 20, 3)], [trunk, acc10])
    assert got[trunk.ns] == [] and got[acc10.ns] == []
    # VLAN 20 access → trunk carries tag 20.
    got = exchange(acc20, [frame("ff:ff:ff:ff:ff:ff", "02:00:00:00:0a:20", None, 4)], [trunk, acc10])
    assert got[trunk.ns] == [{"tci": 20, "payload": f"{4:032x}"}], got
    assert got[acc10.ns] == []
