#!/usr/bin/python3
"""Start one Swift server with its own swift.conf directory.

Swift hard-codes /etc/swift/swift.conf; this launcher repoints it (as Swift's
own in-process tests do) so that the testbed never touches /etc/swift and two
proxies can run with different constraints over the same backends.

usage: swiftd.py SWIFT_DIR SERVER_TYPE CONF_FILE
"""
import sys

from swift.common import utils

swift_dir, server_type, conf_file = sys.argv[1:4]
utils.set_swift_dir(swift_dir)
from swift.common import constraints, storage_policy  # noqa: E402

constraints.reload_constraints()
storage_policy.reload_storage_policies()
from swift.common.wsgi import run_wsgi  # noqa: E402

kwargs = {}
if server_type == "object-server":
    from swift.obj import server

    kwargs["global_conf_callback"] = server.global_conf_callback
sys.exit(run_wsgi(conf_file, server_type, **kwargs))
