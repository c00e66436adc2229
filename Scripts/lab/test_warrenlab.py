"""Unit tests for warrenlab's pure parts: config validation, proposal conversion,
config rendering (checked by BIRD's own parser), and output parsers.

Run: python3 -m unittest discover -s Scripts/lab -p 'test_*.py'  (selftest.py runs
them first). Needs `bird` installed for the rendering checks; no root, no namespaces.
Threading: none.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from warrenlab import LabConfig, LabError, PolicyPeerConfig, cloudstack_to_strongswan  # noqa: E402
from warrenlab import bird as birdmod  # noqa: E402
from warrenlab.config import _PSK_RE  # noqa: E402
from warrenlab.lab import Lab, parse_ping_summary  # noqa: E402
from warrenlab.measure import analyse_ping  # noqa: E402
from warrenlab.peers import AwsPeer, PolicyPeer, _rekey  # noqa: E402
from warrenlab.strongswan import (AWS_RETRANSMISSION, ChildSpec, ConnSpec, parse_vici_raw,  # noqa: E402
                                  render_strongswan_conf, render_swanctl_conf, render_updown)


class ConfigTests(unittest.TestCase):
    def test_defaults_validate_and_resolve_generates_valid_psks(self):
        cfg = LabConfig().resolve()
        keys = [t.psk for t in cfg.aws.tunnels] + [p.psk for p in cfg.policy_peers]
        self.assertEqual(len(set(keys)), 3)
        for k in keys:
            self.assertRegex(k, _PSK_RE)
            self.assertNotEqual(k[0], "0")

    def test_bad_psk_is_refused_without_echoing_it(self):
        cfg = LabConfig()
        cfg.aws.tunnels[0].psk = "0secretvalue"
        with self.assertRaises(LabError) as ctx:
            cfg.validate()
        self.assertIn("aws.tunnels[0].psk", str(ctx.exception))
        self.assertNotIn("0secretvalue", str(ctx.exception))
        cfg.aws.tunnels[0].psk = "short"
        self.assertRaises(LabError, cfg.validate)
        cfg.aws.tunnels[0].psk = "has-dash-char"
        self.assertRaises(LabError, cfg.validate)

    def test_inside_cidr_rules(self):
        for bad in ("169.254.3.0/30", "169.254.169.252/30", "169.254.10.0/29", "10.0.0.0/30"):
            cfg = LabConfig()
            cfg.aws.tunnels[0].inside_cidr = bad
            with self.assertRaises(LabError, msg=bad) as ctx:
                cfg.validate()
            self.assertIn("inside_cidr", str(ctx.exception))

    def test_addresses_must_stay_in_the_lab_ranges(self):
        cfg = LabConfig()
        cfg.aws.tunnels[0].outside_ip = "192.0.2.10"
        self.assertRaises(LabError, cfg.validate)
        cfg = LabConfig()
        cfg.aws.tunnels[1].outside_ip = cfg.aws.tunnels[0].outside_ip
        with self.assertRaises(LabError) as ctx:
            cfg.validate()
        self.assertIn("already used", str(ctx.exception))

    def test_prefix_and_asn_rules(self):
        self.assertRaises(LabError, LabConfig(prefix="toolongprefix").validate)
        self.assertRaises(LabError, LabConfig(prefix="Bad").validate)
        cfg = LabConfig()
        cfg.aws.asn = 65000
        cfg.aws.customer_asn = 65000
        self.assertRaises(LabError, cfg.validate)
        cfg = LabConfig()
        cfg.aws.asn = 100
        self.assertRaises(LabError, cfg.validate)

    def test_policy_peer_subnets_must_not_overlap(self):
        cfg = LabConfig(policy_peers=[PolicyPeerConfig(remote_subnets=["100.64.210.128/25"])])
        with self.assertRaises(LabError) as ctx:
            cfg.validate()
        self.assertIn("overlap", str(ctx.exception))

    def test_unknown_json_field_is_named(self):
        with self.assertRaises(LabError) as ctx:
            LabConfig.from_dict({"aws": {"hold": 3}})
        self.assertIn("hold", str(ctx.exception))

    def test_json_round_trip(self):
        cfg = LabConfig().resolve()
        again = LabConfig.from_dict(cfg.to_dict())
        self.assertEqual(again.to_dict(), cfg.to_dict())


class CloudStackTests(unittest.TestCase):
    def test_conversion(self):
        self.assertEqual(cloudstack_to_strongswan("aes128-sha1;modp1536", field_name="x", dh_required=True),
                         "aes128-sha1-modp1536")
        self.assertEqual(cloudstack_to_strongswan("AES256-SHA256", field_name="x", dh_required=False),
                         "aes256-sha256")

    def test_errors_name_the_field(self):
        for policy, required in (("aes128-sha1", True), ("blowfish-sha1;modp1536", True),
                                 ("aes128-sha1;modp9999", False), ("aes128", False)):
            with self.assertRaises(LabError) as ctx:
                cloudstack_to_strongswan(policy, field_name="ikepolicy", dh_required=required)
            self.assertIn("ikepolicy", str(ctx.exception))


class RenderTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def bird_parses(self, text: str) -> None:
        path = self.dir / "bird.conf"
        path.write_text(text)
        proc = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stderr + text)

    def test_generated_bird_configs_parse(self):
        cfg = LabConfig().resolve()
        peer = AwsPeer(cfg, cfg.aws.tunnels[0])
        text = birdmod.render_tunnel_endpoint(self.dir, peer.bgp_spec())
        self.bird_parses(text)
        self.assertIn("connect delay time 1; connect retry time 2; error wait time 1, 5;", text)
        self.assertIn("203.0.113.10 ~ net", text)   # customer outside IP never via tunnel
        self.assertIn("bgp_med = 100", text)
        self.bird_parses(birdmod.render_lan_host(self.dir, router_id="100.64.200.10", asn=64512,
                                                 gateways=[("awsa", "100.64.200.2", 200),
                                                           ("awsb", "100.64.200.3", None)]))

    def test_swanctl_conf_hides_psk_and_uses_reauth_for_ikev1(self):
        child = ChildSpec("c", ["0.0.0.0/0"], ["0.0.0.0/0"], "aes128-sha1-modp1024", 3600, 3000, 300)
        conn = ConnSpec("t", 1, "198.51.100.10", "203.0.113.10", "aes128-sha1-modp1024",
                        "Plaintextkey123", 28800, 28000, 500, 10, 30, children=[child])
        text = render_swanctl_conf([conn])
        self.assertNotIn("Plaintextkey123", text)
        self.assertIn("secret = 0sUGxhaW50ZXh0a2V5MTIz", text)
        self.assertIn("reauth_time = 28000s", text)
        self.assertIn("rekey_time = 0s", text)
        conn.version = 2
        self.assertIn("rekey_time = 28000s", render_swanctl_conf([conn]))

    def test_strongswan_conf_plugin_order_and_private_table(self):
        text = render_strongswan_conf(self.dir, role="t", retransmission=AWS_RETRANSMISSION)
        self.assertLess(text.index("kernel-libipsec"), text.index("kernel-netlink socket"))
        self.assertIn("routing_table = 210", text)
        self.assertIn("fwmark = 0x5742", text)
        self.assertAlmostEqual(AWS_RETRANSMISSION.total(), 30.0)

    def test_updown_only_touches_the_inside_address(self):
        text = render_updown(self.dir, inside_cidr_address="169.254.10.1/30")
        self.assertIn("ip addr replace 169.254.10.1/30 dev ipsec0", text)
        self.assertNotIn("link set", text)

    def test_policy_peer_children(self):
        cfg = LabConfig(policy_peers=[PolicyPeerConfig(remote_subnets=["100.64.1.0/24", "100.64.4.0/24"])]).resolve()
        peer = PolicyPeer(cfg, cfg.policy_peers[0])
        self.assertEqual([c.name for c in peer.child_specs()], ["l0r0", "l0r1", "l1r0", "l1r1"])
        cfg.policy_peers[0].split_connections = False
        self.assertEqual([(c.local_ts, c.remote_ts) for c in peer.child_specs()],
                         [(["100.64.210.0/24", "100.64.211.0/24"], ["100.64.1.0/24", "100.64.4.0/24"])])

    def test_rekey_times(self):
        self.assertEqual(_rekey(3600, 270, 100), (3330, 270))  # rekeys in 3060..3330 s
        self.assertEqual(_rekey(3600, 270, 0), (3330, 0))

    def test_customer_description_has_what_warren_needs(self):
        lab = Lab(LabConfig(log_dir=str(self.dir)))
        desc = lab.customer_description()
        t = desc["aws"]["tunnels"][0]
        for key in ("aws_outside_ip", "customer_outside_ip", "psk", "inside_cidr",
                    "customer_inside_ip"):
            self.assertIn(key, t)
        self.assertEqual(t["customer_inside_ip"], "169.254.10.2")
        self.assertEqual(desc["uplink"], {"interface": "wlab-up", "gateway": "203.0.113.1",
                                          "cidr": "203.0.113.0/24"})
        self.assertEqual(desc["policy_peers"][0]["cloudstack"]["ikepolicy"], "aes128-sha1;modp1536")


class ParserTests(unittest.TestCase):
    def test_vici_raw(self):
        text = ("list-sa event {t {uniqueid=1 state=ESTABLISHED child-sas {t-1 {name=t state=INSTALLED "
                "local-ts=[0.0.0.0/0 10.0.0.0/8] remote-ts=[0.0.0.0/0]}}}}\nlist-sas reply {}\n")
        msgs = parse_vici_raw(text)
        self.assertEqual(msgs[0]["t"]["child-sas"]["t-1"]["local-ts"], ["0.0.0.0/0", "10.0.0.0/8"])
        self.assertEqual(msgs[0]["t"]["state"], "ESTABLISHED")
        self.assertEqual(msgs[1], {})
        self.assertRaises(LabError, parse_vici_raw, "x {a=1 {")

    def test_ping_loss_window(self):
        lines = [f"[{100 + i * 0.02:.3f}] 64 bytes from 1.1.1.1: icmp_seq={i + 1} ttl=64 time=1 ms"
                 for i in range(10)]
        lines += [f"[{103 + i * 0.02:.3f}] 64 bytes from 1.1.1.1: icmp_seq={i + 160} ttl=64 time=1 ms"
                  for i in range(10)]
        lines.append("169 packets transmitted, 20 received, 88% packet loss, time 3300ms")
        rep = analyse_ping("\n".join(lines), 0.02)
        self.assertAlmostEqual(rep.loss_window_s, 3 - 0.18 - 0.02, places=2)
        self.assertEqual(rep.lost, 149)
        none_lost = analyse_ping("\n".join(lines[:10]) + "\n10 packets transmitted, 10 received", 0.02)
        self.assertEqual(none_lost.loss_window_s, 0.0)

    def test_ping_summary(self):
        r = parse_ping_summary("3 packets transmitted, 2 received, 33% packet loss\n"
                               "rtt min/avg/max/mdev = 0.1/0.2/0.3/0.05 ms", "1.1.1.1")
        self.assertEqual((r["transmitted"], r["received"], r["rtt_avg_ms"]), (3, 2, 0.2))
        self.assertRaises(LabError, parse_ping_summary, "ping: connect: Network is unreachable")


if __name__ == "__main__":
    unittest.main()
