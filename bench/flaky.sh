#!/usr/bin/env bash
# Flaky-link benchmark (not part of the tests): k5up without tuning flags vs
# python-swiftclient and rclone (defaults and 16 MiB segments) through an emulated
# link with a shared rate cap and periodic outages (bench/flaplink.py). Arguments go
# to bench/flaky.py, e.g. bench/flaky.sh --size-mib 1024 --rate-mib 4 --links 45:5,20:5,10:2
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_peers
exec /usr/bin/python3 bench/flaky.py --swift "$swift" "$@"
