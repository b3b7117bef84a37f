#!/usr/bin/env bash
# Zeros benchmark (not part of the tests): a sparse ext4 image built with
# mkfs.ext4 -d from a directory of real files, and an allocated copy of it, uploaded by
# k5up (SLO and DLO), python-swiftclient and rclone through a counting relay; bytes on
# the wire per byte of data, bytes read, wall time, server bytes used. Arguments go
# to bench/zeros.py, e.g. bench/zeros.sh --size-gib 16 --source-dir /usr/lib
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_peers
exec /usr/bin/python3 bench/zeros.py --swift "$swift" "$@"
