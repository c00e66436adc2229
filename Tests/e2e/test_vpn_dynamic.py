"""DynamicVPN end to end: a tenant VM behind a Warren router, two IPsec tunnels with BGP to
the lab's AWS-side peer, and the VPC host behind it (issue 5's list).

Fast BGP timers (hold 3 s / keepalive 1 s) keep failover tests short; the AWS-timer loss
window is measured by `warren-bench vpn`, not here.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time

import pytest

from vpn_support import (UPLINK, VPNLab, continuous_ping, instance_dirs, lab_config, learned_routes, pid_of,
                         swanctl_sas, tunnels, wait_tunnels, warren_namespaces)
from warren_e2e import RPCError, run, wait_until

VPC_HOST = "100.64.200.10"


@pytest.fixture
def vpn_lab(request, hosts):
    ike = getattr(request, "param", 2)
    v = VPNLab(lab_config(ike_version=ike)).up()
    try:
        v.vm = v.tenant(hosts)
        yield v
    finally:
        v.down()


def create_and_wait(v: VPNLab, name: str = "aws1") -> dict:
    view = v.agent.call("vpn.dynamic.create", v.dynamic_spec(name))
    assert view["name"] == name and len(view["tunnels"]) == 2
    wait_tunnels(v.agent, name, {"A": "up", "B": "up"})
    wait_until(lambda: len(learned_routes(v.agent)) == 2, timeout=15, what="learned routes of both tunnels")
    return view


@pytest.mark.parametrize("vpn_lab", [2], indirect=True)
def test_traffic_crosses_encrypted(vpn_lab, hosts):
    v = vpn_lab
    create_and_wait(v)
    routes = learned_routes(v.agent)
    assert {r["destination"] for r in routes} == {"100.64.200.0/24"}
    assert sorted(r["weight"] for r in routes) == [100, 200], "tunnel A preferred"
    cap = subprocess.Popen(["tcpdump", "-n", "-i", UPLINK, "-w", "/tmp/wev-uplink.pcap", "-U"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        assert v.vm.ping(VPC_HOST, count=5) == 5
        assert v.lab.vpc_ping("100.64.1.10", count=3)["received"] == 3, "and back from the VPC"
        # TCP data, checked end to end.
        payload = os.urandom(2 << 20)
        digest = hashlib.sha256(payload).hexdigest()
        server = subprocess.Popen(["ip", "netns", "exec", v.lab.namespace("host"), "python3", "-c",
                                   "import socket,hashlib;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
                                   "s.bind(('0.0.0.0',5599));s.listen(1);c,_=s.accept();h=hashlib.sha256()\n"
                                   "while True:\n d=c.recv(65536)\n if not d: break\n h.update(d)\nprint(h.hexdigest())"],
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        with open("/tmp/wev-payload", "wb") as f:
            f.write(payload)
        v.vm.exec(["python3", "-c", "import socket;s=socket.create_connection(('100.64.200.10',5599),timeout=20);"
                                    "s.sendall(open('/tmp/wev-payload','rb').read());s.close()"], timeout=60)
        out, _ = server.communicate(timeout=30)
        assert out.strip() == digest, "TCP data arrived intact through the tunnel (MSS clamped)"
    finally:
        cap.send_signal(signal.SIGINT)
        cap.wait(timeout=10)
    text = run(["tcpdump", "-n", "-r", "/tmp/wev-uplink.pcap"], check=False).stdout
    lines = [l for l in text.splitlines() if " IP " in l]
    assert lines, "the capture saw the tunnel traffic"
    cleartext = [l for l in lines if "100.64." in l]
    assert not cleartext, f"cleartext on the uplink: {cleartext[:3]}"
    esp = [l for l in lines if ".4500 " in l or ".4500:" in l]
    assert len(esp) >= 10, "ESP-in-UDP (port 4500) carries the traffic"
    other = [l for l in lines if ".4500" not in l and ".500" not in l]
    assert not other, f"only IKE and ESP-in-UDP on the uplink, got {other[:3]}"
    status = tunnels(v.agent, "aws1")
    assert status["A"]["active"] and not status["B"]["active"]
    assert status["A"]["packetsOut"] > 0 and status["A"]["bgpState"] == "Established"
    assert status["A"]["prefixesReceived"] == 1 and status["A"]["prefixesAdvertised"] == 1


@pytest.mark.parametrize("vpn_lab", [1, 2], indirect=True, ids=["ikev1", "ikev2"])
def test_failover_and_heal(vpn_lab):
    v = vpn_lab
    create_and_wait(v)
    # Silent outage of A: traffic continues through B after the BGP hold time.
    result = continuous_ping(v.vm, VPC_HOST, seconds=14)
    time.sleep(2)
    v.lab.fail_tunnel("A", "silent")
    wait_until(lambda: tunnels(v.agent, "aws1")["A"]["state"] != "up", timeout=15, what="A noticed down")
    routes = learned_routes(v.agent)
    assert [r["weight"] for r in routes] == [200], "only B's route is left"
    assert tunnels(v.agent, "aws1")["B"]["active"]
    sent, received = result()
    lost_seconds = (sent - received) * 0.05
    assert received > 0 and lost_seconds <= 8, f"silent failover lost {lost_seconds:.2f}s of traffic (hold 3 s)"
    # A heals: its route returns with the lower weight and traffic goes back to A.
    v.lab.heal_tunnel("A")
    wait_tunnels(v.agent, "aws1", {"A": "up", "B": "up"}, timeout=60)
    wait_until(lambda: sorted(r["weight"] for r in learned_routes(v.agent)) == [100, 200], timeout=15, what="A's route back")
    assert tunnels(v.agent, "aws1")["A"]["active"]
    assert v.vm.ping(VPC_HOST, count=3) == 3
    # Clean tunnel down: routes leave at once, (almost) nothing is lost.
    result = continuous_ping(v.vm, VPC_HOST, seconds=6)
    time.sleep(1.5)
    v.lab.fail_tunnel("A", "clean")
    sent, received = result()
    assert (sent - received) * 0.05 <= 1.0, f"clean failover lost {(sent - received) * 0.05:.2f}s"
    v.lab.heal_tunnel("A")


def test_agent_restart_keeps_tunnels(vpn_lab):
    v = vpn_lab
    create_and_wait(v)
    dirs = instance_dirs(v.agent, "vpn.dynamic")
    before = {d.name: swanctl_sas(d) for d in dirs}
    pids = {k: pid_of(t["charon"]) for k, t in tunnels(v.agent, "aws1").items()}
    for how in (signal.SIGTERM, signal.SIGKILL):
        v.agent.stop(how)
        v.agent.start()
        wait_tunnels(v.agent, "aws1", {"A": "up", "B": "up"}, timeout=20)
        wait_until(lambda: len(learned_routes(v.agent)) == 2, timeout=15, what="routes re-injected")
        assert {k: pid_of(t["charon"]) for k, t in tunnels(v.agent, "aws1").items()} == pids, "charons adopted, not restarted"
        after = {d.name: swanctl_sas(d) for d in dirs}
        for name in before:
            spis_before = sorted(set(_spis(before[name])))
            assert spis_before and spis_before == sorted(set(_spis(after[name]))), "no renegotiation (same SPIs)"
        assert v.vm.ping(VPC_HOST, count=3) == 3


def _spis(raw: str) -> list[str]:
    import re
    return re.findall(r"spi-in=([0-9a-f]+)", raw)


def test_crashed_daemons_recover(vpn_lab):
    v = vpn_lab
    create_and_wait(v)
    a = tunnels(v.agent, "aws1")["A"]
    os.kill(pid_of(a["charon"]), signal.SIGKILL)
    wait_until(lambda: tunnels(v.agent, "aws1")["A"]["state"] != "up", timeout=10, what="A down after charon died")
    t = wait_tunnels(v.agent, "aws1", {"A": "up"}, timeout=60)
    assert pid_of(t["A"]["charon"]) != pid_of(a["charon"]), "charon restarted"
    wait_until(lambda: len(learned_routes(v.agent)) == 2, timeout=20, what="A's route back")
    old_bird = pid_of(t["A"]["bird"])
    os.kill(old_bird, signal.SIGKILL)
    # The supervisor restarts BIRD within about a second; BGP comes back on its own.
    wait_until(lambda: (b := tunnels(v.agent, "aws1")["A"]["bird"]).startswith("running") and pid_of(b) != old_bird,
               timeout=20, what="BIRD restarted")
    t = wait_tunnels(v.agent, "aws1", {"A": "up"}, timeout=60)
    assert t["A"]["bgpState"] == "Established"
    wait_until(lambda: len(learned_routes(v.agent)) == 2, timeout=20, what="routes recovered")
    assert v.vm.ping(VPC_HOST, count=3) == 3


def test_update_one_tunnel_leaves_the_other_up(vpn_lab):
    v = vpn_lab
    create_and_wait(v)
    dirs = {d.name: d for d in instance_dirs(v.agent, "vpn.dynamic")}
    view = v.agent.call("vpn.dynamic.get", id="aws1")
    plans = {t: d for t, d in zip("AB", sorted(dirs))}
    a_before = {d: _spis(swanctl_sas(dirs[d])) for d in dirs}
    spec = v.dynamic_spec()
    spec["ipsecPairingB"]["phase1Lifetime"] = 27000
    v.agent.call("vpn.dynamic.update", id="aws1", ipsecPairingB=spec["ipsecPairingB"])
    wait_tunnels(v.agent, "aws1", {"A": "up", "B": "up"}, timeout=40)
    a_after = {d: _spis(swanctl_sas(dirs[d])) for d in dirs}
    unchanged = [d for d in dirs if a_before[d] and a_before[d] == a_after[d]]
    changed = [d for d in dirs if a_before[d] != a_after[d]]
    assert len(unchanged) == 1 and len(changed) == 1, f"exactly one tunnel renegotiated ({a_before} -> {a_after})"
    assert v.agent.call("vpn.dynamic.get", id="aws1")["ipsecPairingB"]["phase1Lifetime"] == 27000
    assert view["tunnels"] and plans


def test_validation_errors_create_nothing(vpn_lab):
    v = vpn_lab
    good = v.dynamic_spec()

    def expect(field: str, mutate, code: int = -32602):
        spec = v.dynamic_spec()
        mutate(spec)
        with pytest.raises(RPCError) as e:
            v.agent.call("vpn.dynamic.create", spec)
        assert e.value.code == code, f"{field}: {e.value}"
        assert e.value.field == field, f"expected field {field}, got {e.value.field} ({e.value})"
        assert "psk" not in str(e.value).lower() or "preSharedKey" in field

    expect("bgpPairingA.localIp", lambda s: s["bgpPairingA"].update(localIp="10.0.0.2"))
    expect("bgpPairingA.localIp", lambda s: s["bgpPairingA"].update(localIp="169.254.3.2"))        # reserved
    expect("bgpPairingA.localIp", lambda s: s["bgpPairingA"].update(localIp="169.254.169.254"))    # reserved
    expect("bgpPairingA.peerIp", lambda s: s["bgpPairingA"].update(peerIp="169.254.12.1"))        # other /30
    expect("bgpPairingB.localIp", lambda s: s["bgpPairingB"].update(localIp="169.254.10.1", peerIp="169.254.10.2"))  # same /30 as A
    expect("bgpPairingA.localAsn", lambda s: s["bgpPairingA"].update(localAsn=0))
    expect("bgpPairingA.remoteAsn", lambda s: s["bgpPairingA"].update(remoteAsn=65000))
    expect("bgpPairingA.localAsn", lambda s: s["bgpPairingA"].update(localAsn=4294967296))       # out of UInt32
    for psk in ["short", "0startsWithZero", 'has"quote12', "has space 123", "new\nline1234", "x" * 65]:
        expect("ipsecPairingA.preSharedKey", lambda s, p=psk: s["ipsecPairingA"].update(preSharedKey=p))
    expect("ipsecPairingA.phase1Lifetime", lambda s: s["ipsecPairingA"].update(phase1Lifetime=100))
    expect("ipsecPairingA.phase2Lifetime", lambda s: s["ipsecPairingA"].update(phase1Lifetime=3000, phase2Lifetime=3000))
    expect("ipsecPairingA.dhGroup", lambda s: s["ipsecPairingA"].update(dhGroup=3))
    expect("localSubnets[1]", lambda s: s.update(localSubnets=["100.64.1.0/24", "100.64.1.128/25"]))
    expect("localSubnets[0]", lambda s: s.update(localSubnets=["100.64.1.1/24"]))
    expect("virtualRouter", lambda s: s.update(virtualRouter="nope"), code=-32001)
    expect("ipsecPairingB.publicIp", lambda s: s["ipsecPairingB"].update(publicIp=s["ipsecPairingA"]["publicIp"]))
    expect("ipsecPairingA.publicIp", lambda s: s["ipsecPairingA"].update(publicIp="198.51.100.99"))  # not on the uplink
    assert v.agent.call("vpn.dynamic.list")["items"] == []
    assert not warren_namespaces() or all(not n.endswith(tuple(d.name for d in instance_dirs(v.agent, "vpn.dynamic"))) for n in warren_namespaces())
    assert not [p for p in v.agent.call("port.list")["items"] if p["name"].startswith("vpn-")]
    # The good spec works, and its public IPs are then taken.
    v.agent.call("vpn.dynamic.create", good)
    with pytest.raises(RPCError) as e:
        v.agent.call("vpn.dynamic.create", dict(v.dynamic_spec("aws2")))
    assert e.value.code == -32002 and e.value.field == "ipsecPairingA.publicIp"


def test_delete_leaves_nothing(vpn_lab):
    v = vpn_lab
    create_and_wait(v)
    dirs = instance_dirs(v.agent, "vpn.dynamic")
    ids = [d.name for d in dirs]
    pids = [pid_of(t[k]) for t in tunnels(v.agent, "aws1").values() for k in ("charon", "bird")]
    v.agent.call("vpn.dynamic.delete", id="aws1")
    assert not [n for n in warren_namespaces() if n.removeprefix("warren-vpn-") in ids], "namespaces removed"
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z", f"process {pid} gone"
    ports = [p["name"] for p in v.agent.call("port.list")["items"]]
    assert not [p for p in ports if p.startswith("vpn-")], ports
    assert learned_routes(v.agent) == []
    links = run(["ip", "-o", "link"]).stdout
    assert not [i for i in ids if f"wvo{i}" in links or f"wvi{i}" in links], "veths removed"
    assert v.agent.call("vpn.dynamic.list")["items"] == []
