#!/usr/bin/env bash
# Side-by-side benchmark (not part of the tests): k5up, python-swiftclient (PyPI, in a
# venv), rclone (Debian) and raw parallel curl PUTs upload the same random file to the
# testbed's stock Swift proxy, alternating; then a kill at half and a rerun per tool.
# Prints a Markdown table. Arguments go to bench/compare.py, e.g.
#   bench/compare.sh --size-gib 4 --segment-mib 256 --concurrency 4 --runs 2
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
exec /usr/bin/python3 bench/compare.py --swift "$PWD/$venv/bin/swift" "$@"
