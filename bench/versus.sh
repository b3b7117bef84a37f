#!/usr/bin/env bash
# Clean-link cost of a change (not part of the tests): this tree's k5up against the
# k5up of an older revision, both with default flags, uploading the same random file
# to the testbed's stock proxy (no throttle, no faults), alternating old/new so the
# machine's drift hits both alike. Prints each run and the medians' ratio.
#   bench/versus.sh REV [SIZE_GIB=4] [RUNS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: bench/versus.sh REV [SIZE_GIB] [RUNS]}
size=${2:-4}
runs=${3:-3}
. bench/lib.sh
bench_start $((size << 30))
old=$work/old
git worktree add -q --detach "$old" "$rev"
trap 'git worktree remove --force "$old"; rm -rf "$work"' EXIT
(cd "$old" && CARGO_TARGET_DIR=$work/old-target cargo build --release --locked --quiet)
/usr/bin/python3 - "$work" "$work/old-target/release/k5up" target/release/k5up "$runs" "$rev" <<'PY'
import os, statistics, subprocess, sys, time
work, old, new, runs, rev = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
size = os.path.getsize(work + "/img")
walls = {"old": [], "new": []}
for i in range(runs):
    for name, exe in (("old", old), ("new", new)):
        c = f"versus-{os.getpid()}-{name}-{i}"
        env = dict(os.environ, K5UP_JOURNAL=f"{work}/j-{name}-{i}")
        t = time.time()
        p = subprocess.run([exe, "upload", work + "/img", "-c", c, "--no-progress"], env=env,
                           capture_output=True, text=True)
        wall = time.time() - t
        if p.returncode != 0:
            sys.exit(f"{name} failed: {p.stderr}")
        walls[name].append(wall)
        print(f"run {i + 1} {name:3}: {wall:6.1f} s, {size / 2**20 / wall:5.0f} MiB/s", flush=True)
        subprocess.run([exe, "abort", "--purge", p.stdout.split()[1].rstrip(":")], env=env,
                       capture_output=True)
mo, mn = statistics.median(walls["old"]), statistics.median(walls["new"])
print(f"median wall: {rev} {mo:.1f} s, this tree {mn:.1f} s: new/old = {mn / mo:.3f}")
PY
