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
