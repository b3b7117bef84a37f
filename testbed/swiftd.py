#!/usr/bin/python3
"""Start one Swift server with its own swift.conf directory.

Swift hard-codes /etc/swift/swift.conf; this launcher repoints it (as Swift's
own in-process tests do) so that the testbed never touches /etc/swift and two
proxies can run with different constraints over the same backends.

usage: swiftd.py SWIFT_DIR SERVER_TYPE CONF_FILE
"""
import logging
import logging.handlers
import os
import sys

from swift.common import utils

swift_dir, server_type, conf_file = sys.argv[1:4]


class FileSyslog(logging.FileHandler):
    """Swift logs to syslog, which these machines lack: write its lines to a file."""

    def __init__(self, *args, **kwargs):
        super().__init__(os.environ.get("SWIFT_LOG_FILE", "/dev/null"))


for _k in dir(logging.handlers.SysLogHandler):
    if _k.startswith("LOG_") or _k in ("facility_names", "priority_names"):
        setattr(FileSyslog, _k, getattr(logging.handlers.SysLogHandler, _k))
utils.ThreadSafeSysLogHandler = FileSyslog
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
