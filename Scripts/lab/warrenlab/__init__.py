"""warrenlab: the VPN test lab for Warren (the far side of Warren's uplink).

`Lab` builds an "Internet" router namespace, two AWS Site-to-Site VPN tunnel
endpoints (`AwsPeer`) with a VPC LAN and host, and CloudStack-style policy-based
peers (`PolicyPeer`), all in network namespaces named `<prefix>-*`. See
Docs/lab.md for the topology, the configuration recipe and measured figures.
`customer` holds a test-only, hand-made customer side used by selftest.py.

Standard library only (Python 3.11); needs root, iproute2, nftables, strongSwan
(charon + swanctl with kernel-libipsec) and BIRD 2.
"""

from .config import (AwsConfig, AwsTunnelConfig, LabConfig, PolicyPeerConfig,
                     cloudstack_to_strongswan, generate_psk)
from .errors import LabError
from .lab import Lab
from .peers import AwsPeer, PolicyPeer

__all__ = ["AwsConfig", "AwsTunnelConfig", "AwsPeer", "Lab", "LabConfig", "LabError",
           "PolicyPeer", "PolicyPeerConfig", "cloudstack_to_strongswan", "generate_psk"]
