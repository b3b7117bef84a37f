#!/usr/bin/python3
"""Build one-replica, one-device account/container/object rings in SWIFT_DIR."""
import sys

from swift.common.ring import RingBuilder

swift_dir, devices_ip = sys.argv[1], sys.argv[2]
ports = {"account": int(sys.argv[3]), "container": int(sys.argv[4]), "object": int(sys.argv[5])}
for name, port in ports.items():
    b = RingBuilder(10, 1, 1)
    b.add_dev({"id": 0, "region": 1, "zone": 1, "ip": devices_ip, "port": port,
               "device": "sdb1", "weight": 100, "meta": ""})
    b.rebalance()
    b.save("%s/%s.builder" % (swift_dir, name))
    b.get_ring().save("%s/%s.ring.gz" % (swift_dir, name))
