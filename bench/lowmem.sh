#!/usr/bin/env bash
# Small machine, slow disk (not part of the tests): k5up and python-swiftclient upload
# the same random file to the testbed's stock Swift proxy, each inside a cgroup with a
# memory limit, then also a read-rate limit on the file's disk; the page cache is
# dropped before each run. Reports bytes read from storage / file size and wall time /
# the disk's limit (issue 22's table). Needs root (cgroups, drop_caches).
#   bench/lowmem.sh [--size-gib 2] [--mem-mib 768] [--read-mbps 100] [--runs 1]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_peers
exec /usr/bin/python3 bench/lowmem.py --swift "$swift" "$@"
