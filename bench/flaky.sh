#!/usr/bin/env bash
# Flaky-link benchmark (not part of the tests): k5up without tuning flags vs
# python-swiftclient and rclone (defaults and 16 MiB segments) through an emulated
# link with a shared rate cap and periodic outages (bench/flaplink.py). Arguments go
# to bench/flaky.py, e.g. bench/flaky.sh --size-mib 1024 --rate-mib 4 --links 45:5,20:5,10:2
set -euo pipefail
cd "$(dirname "$0")/.."
testbed/up >/dev/null
if ! command -v rclone >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rclone >/dev/null
fi
venv=bench/.venv
if [ ! -x "$venv/bin/swift" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q python-swiftclient
fi
cargo build --release --locked --quiet
exec /usr/bin/python3 bench/flaky.py --swift "$PWD/$venv/bin/swift" "$@"
