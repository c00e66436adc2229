"""StaticVPN end to end: policy-based tunnels to CloudStack-style peers (issue 6's list).

Lab peers (Scripts/lab): `cs` (198.51.100.20) with subnets 100.64.210.0/24 and
100.64.211.0/24 (hosts .10 in namespaces wev-cs1, wev-cs2); `csb` (198.51.100.21) with
100.64.212.0/24 (host in wev-csb1).
"""
from __future__ import annotations

import signal
import subprocess
import time

import pytest

from vpn_support import UPLINK, VPNLab, instance_dirs, lab_config, swanctl_sas, warren_namespaces
from warren_e2e import RPCError, run, wait_until

CS_PEERS = [
    {"name": "cs", "remote_subnets": ["100.64.1.0/24"], "ike_version": "ikev2",
     "ike_policy": "aes128-sha1;modp1536", "esp_policy": "aes128-sha1;modp1536", "customer_outside_ip": "203.0.113.20"},
    {"name": "csb", "outside_ip": "198.51.100.21", "customer_outside_ip": "203.0.113.21", "ike_version": "ikev1",
     "local_subnets": ["100.64.212.0/24"], "remote_subnets": ["100.64.1.0/24"],
     "ike_policy": "aes256-sha256;modp2048", "esp_policy": "aes256-sha256;modp2048"},
]


@pytest.fixture
def cs_lab(hosts):
    v = VPNLab(lab_config(aws=False, policy_peers=CS_PEERS)).up()
    try:
        v.vm = v.tenant(hosts)
        yield v
    finally:
        v.down()


def status(agent, name):
    return agent.call("vpn.static.status", id=name)["items"][0]


def wait_up(agent, name, timeout=40):
    return wait_until(lambda: (s := status(agent, name))["state"] == "up" and s, timeout=timeout, interval=0.25,
                      what=f"{name} up")


def test_both_remote_subnets_pass_traffic_encrypted(cs_lab):
    v = cs_lab
    view = v.agent.call("vpn.static.create", v.static_spec("cs", "cs1"))
    assert len(view["children"]) == 2, "one CHILD_SA per (local, remote) pair"
    s = wait_up(v.agent, "cs1")
    assert {c["remoteSubnet"] for c in s["children"]} == {"100.64.210.0/24", "100.64.211.0/24"}
    routes = [r for r in v.agent.call("route.list", router="r1")["items"] if r.get("owner") == "vpn.static cs1"]
    assert {r["destination"] for r in routes} == {"100.64.210.0/24", "100.64.211.0/24"} and all(r["source"] == "static" for r in routes)
    cap = subprocess.Popen(["tcpdump", "-n", "-i", UPLINK, "-w", "/tmp/wev-cs.pcap", "-U"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        for host in ("100.64.210.10", "100.64.211.10"):
            assert v.vm.ping(host, count=3) == 3, f"every remote subnet passes traffic ({host})"
        for ns in ("cs1", "cs2"):
            assert v.lab.ping(v.lab.namespace(ns), "100.64.1.10", count=2)["received"] == 2, "and back"
    finally:
        cap.send_signal(signal.SIGINT)
        cap.wait(timeout=10)
    lines = [l for l in run(["tcpdump", "-n", "-r", "/tmp/wev-cs.pcap"], check=False).stdout.splitlines() if " IP " in l]
    assert lines and not [l for l in lines if "100.64." in l], "no cleartext on the uplink"
    assert [l for l in lines if ".4500" in l], "ESP-in-UDP carries it"
    s = wait_until(lambda: (x := status(v.agent, "cs1")) and all(c["packetsIn"] > 0 for c in x["children"]) and x,
                   timeout=10, what="per-CHILD_SA counters")
    assert all(c["state"] == "INSTALLED" for c in s["children"])


def test_destination_outside_remote_subnets_stays_out(cs_lab):
    v = cs_lab
    v.agent.call("vpn.static.create", v.static_spec("cs", "cs1"))
    wait_up(v.agent, "cs1")
    before = {c["name"]: c["packetsOut"] for c in status(v.agent, "cs1")["children"]}
    out = v.vm.exec(["ping", "-n", "-c", "2", "-W", "1", "100.64.213.10"], check=False).stdout
    assert "Unreachable" in out or " 0 received" in out
    trace = v.agent.call("packet.trace", port="v1p", packet={"ipSrc": "100.64.1.10", "ipDst": "100.64.213.10"})
    assert trace["result"]["kind"] != "output" or not any(p.startswith("vpn-") for p in trace["result"]["ports"])
    time.sleep(2.5)
    after = {c["name"]: c["packetsOut"] for c in status(v.agent, "cs1")["children"]}
    assert after == before, "nothing entered the tunnel"


def test_peer_restart_recovers(cs_lab):
    v = cs_lab
    v.agent.call("vpn.static.create", v.static_spec("cs", "cs1"))
    wait_up(v.agent, "cs1")
    v.lab.restart_peer("cs")
    # DPD (10 s probes) notices the lost SAs; the tunnel comes back by itself.
    wait_until(lambda: v.vm.ping("100.64.210.10", count=1, timeout=1) == 1 and v.vm.ping("100.64.211.10", count=1, timeout=1) == 1,
               timeout=90, interval=1, what="traffic resumed after the peer restarted")
    wait_up(v.agent, "cs1", timeout=30)


def test_two_connections_update_one_leaves_other_up(cs_lab):
    v = cs_lab
    v.agent.call("vpn.static.create", v.static_spec("cs", "cs1"))
    v.agent.call("vpn.static.create", v.static_spec("csb", "cs2"))
    wait_up(v.agent, "cs1")
    wait_up(v.agent, "cs2")
    assert v.vm.ping("100.64.212.10", count=2) == 2
    dirs = {d.name: d for d in instance_dirs(v.agent, "vpn.static")}
    before = {k: swanctl_sas(d) for k, d in dirs.items()}
    spec = v.static_spec("cs", "cs1")
    spec["ipsecPairing"]["esplifetime"] = 3000
    v.agent.call("vpn.static.update", id="cs1", ipsecPairing=spec["ipsecPairing"])
    wait_up(v.agent, "cs1")
    after = {k: swanctl_sas(d) for k, d in dirs.items()}
    import re
    spis = lambda raw: sorted(re.findall(r"spi-in=([0-9a-f]+)", raw))
    unchanged = [k for k in dirs if spis(before[k]) == spis(after[k]) and spis(before[k])]
    assert len(unchanged) == 1, "the other connection's SAs stayed up"
    assert v.vm.ping("100.64.212.10", count=2) == 2


def test_validation_errors(cs_lab):
    v = cs_lab
    # Limits are configurable; defaults: 10 remote subnets, 4 connections per router.

    def expect(field, spec, code=-32602):
        with pytest.raises(RPCError) as e:
            v.agent.call("vpn.static.create", spec)
        assert e.value.code == code and e.value.field == field, f"expected {code} {field}, got {e.value}"

    base = lambda: v.static_spec("cs", "x1")
    s = base(); s["remoteSubnets"] = ["100.64.210.0/24", "100.64.210.128/25"]; expect("remoteSubnets[1]", s)
    s = base(); s["remoteSubnets"] = ["100.64.210.1/24"]; expect("remoteSubnets[0]", s)
    s = base(); s["remoteSubnets"] = ["100.64.1.0/25"]; expect("remoteSubnets[0]", s)          # the router's own subnet
    s = base(); s["remoteSubnets"] = [f"100.64.{220 + i}.0/24" for i in range(11)]; expect("remoteSubnets", s)
    s = base(); s["ipsecPairing"]["ikepolicy"] = "aes128-sha1"; expect("ipsecPairing.ikepolicy", s)  # group required
    s = base(); s["ipsecPairing"]["ikepolicy"] = "blowfish-sha1;modp1536"; expect("ipsecPairing.ikepolicy", s)
    s = base(); s["ipsecPairing"]["esppolicy"] = "aes128-sha7"; expect("ipsecPairing.esppolicy", s)
    s = base(); s["ipsecPairing"]["ikelifetime"] = 90000; expect("ipsecPairing.ikelifetime", s)
    s = base(); s["ipsecPairing"]["esplifetime"] = 0; expect("ipsecPairing.esplifetime", s)
    s = base(); s["ipsecPairing"]["ikeversion"] = "ikev3"; expect("ipsecPairing.ikeversion", s)
    for bad in ["has\nnewline", 'has"quote']:
        s = base(); s["ipsecPairing"]["preSharedKey"] = bad; expect("ipsecPairing.preSharedKey", s)
    s = base(); s["virtualRouter"] = "nope"; expect("virtualRouter", s, code=-32001)
    assert v.agent.call("vpn.static.list")["items"] == []
    assert not [p for p in v.agent.call("port.list")["items"] if p["name"].startswith("vpn-")]
    # Another connection's remote subnets on the same router.
    v.agent.call("vpn.static.create", v.static_spec("cs", "cs1"))
    s = v.static_spec("csb", "cs2"); s["remoteSubnets"] = ["100.64.211.0/24"]; expect("remoteSubnets[0]", s, code=-32002)
    # More than 4 connections per router (with distinct peers and public IPs).
    for i in range(3):
        s = v.static_spec("csb", f"extra{i}")
        s["remoteSubnets"] = [f"100.64.{230 + i}.0/24"]
        s["ipsecPairing"].update(publicIp=f"203.0.113.{40 + i}", peerIp=f"198.51.100.{40 + i}", passive=True)
        v.agent.call("vpn.static.create", s)
    s = v.static_spec("csb", "extra9"); s["remoteSubnets"] = ["100.64.240.0/24"]
    s["ipsecPairing"].update(publicIp="203.0.113.49", peerIp="198.51.100.49")
    expect("virtualRouter", s, code=-32003)


def test_delete_leaves_nothing(cs_lab):
    v = cs_lab
    v.agent.call("vpn.static.create", v.static_spec("cs", "cs1"))
    wait_up(v.agent, "cs1")
    ids = [d.name for d in instance_dirs(v.agent, "vpn.static")]
    v.agent.call("vpn.static.delete", id="cs1")
    assert not [n for n in warren_namespaces() if n.removeprefix("warren-vpn-") in ids]
    assert not [r for r in v.agent.call("route.list", router="r1")["items"] if r.get("owner")]
    assert not [p for p in v.agent.call("port.list")["items"] if p["name"].startswith("vpn-")]
    assert v.vm.ping("100.64.210.10", count=1, timeout=1) == 0
