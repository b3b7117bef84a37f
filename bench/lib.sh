# Shared start of the bench scripts (sourced): the testbed, its env, a release build,
# a work directory removed on exit, a journal in it, and $work/img of $1 random bytes.
# shellcheck shell=bash
bench_start() {
  testbed/up >/dev/null
  # shellcheck disable=SC1091
  . testbed/run/env
  cargo build --release --locked --quiet
  work=$(mktemp -d /tmp/k5up-bench.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  head -c "$1" /dev/urandom >"$work/img"
  export K5UP_JOURNAL=$work/journal
}

# Deletes the only job of the journal and its object (k5up abort --purge).
bench_purge() {
  local k5up=target/release/k5up
  "$k5up" abort --purge "$("$k5up" jobs --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["job"])')" >/dev/null
}

# The peers of the comparison benches: the testbed, rclone (Debian), python-swiftclient
# (PyPI, in bench/.venv) and a release build of k5up. Sets $swift to the swift CLI.
bench_peers() {
  testbed/up >/dev/null
  if ! command -v rclone >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rclone >/dev/null
  fi
  local venv=bench/.venv
  if [ ! -x "$venv/bin/swift" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q python-swiftclient
  fi
  cargo build --release --locked --quiet
  swift=$PWD/$venv/bin/swift
}
