#!/usr/bin/env bash
# Side-by-side benchmark (not part of the tests): k5up, python-swiftclient (PyPI, in a
# venv), rclone (Debian) and raw parallel curl PUTs upload the same random file to the
# testbed's stock Swift proxy, alternating; then a kill at half and a rerun per tool.
# Prints a Markdown table. Arguments go to bench/compare.py, e.g.
#   bench/compare.sh --size-gib 4 --segment-mib 256 --concurrency 4 --runs 2
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_peers
exec /usr/bin/python3 bench/compare.py --swift "$swift" "$@"
