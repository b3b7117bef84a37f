#!/usr/bin/env bash
# Benchmark (not part of the tests): the check a run makes on a finished job. The
# same `upload` command on a finished job of BENCH_SEGMENTS (1000) segments lists the
# segment container and compares every name, size and ETag with the journal, then
# says "complete". Timed side by side with what one listing costs by itself: raw
# curl (one GET of the JSON listing) and python-swiftclient (`swift list`).
#   bench/finished.sh            (BENCH_SEGMENTS=1000 BENCH_RUNS=5)
set -euo pipefail
cd "$(dirname "$0")/.."
segments=${BENCH_SEGMENTS:-1000}
runs=${BENCH_RUNS:-5}
. bench/lib.sh
bench_peers
bench_start $((segments * 1048576))
/usr/bin/python3 - "$work" "finished-$$" "$runs" "$swift" <<'PY'
import json, os, statistics, subprocess, sys, time, urllib.request
work, c, runs, swift = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
k5up = "target/release/k5up"
args = [k5up, "upload", work + "/img", "-c", c, "--segment-size", "1MiB", "--no-progress"]
p = subprocess.run(args, capture_output=True, text=True)
if p.returncode != 0:
    sys.exit(p.stderr)
job = p.stdout.split()[1].rstrip(":")
st = json.loads(subprocess.run([k5up, "status", job, "--json"], capture_output=True, text=True).stdout)
segs = st["segments_total"]
# A token and the storage URL, as curl would use them.
req = urllib.request.Request(os.environ["ST_AUTH"], headers={"X-Auth-User": os.environ["ST_USER"],
                                                            "X-Auth-Key": os.environ["ST_KEY"]})
with urllib.request.urlopen(req) as r:
    url, token = r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]

def timed(cmd, check=None):
    out = []
    for _ in range(runs):
        t = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True)
        out.append(time.time() - t)
        if p.returncode != 0 or (check and check not in p.stdout + p.stderr):
            sys.exit(f"{cmd[0]} failed: {p.stderr[-2000:]}")
    return statistics.median(out)

k = timed(args, "is complete")
curl = timed(["curl", "-sf", "-o", "/dev/null", "-H", f"X-Auth-Token: {token}",
              f"{url}/{c}_segments?format=json&prefix=img/"])
sw = timed([swift, "-A", os.environ["ST_AUTH"], "-U", os.environ["ST_USER"], "-K", os.environ["ST_KEY"],
            "list", c + "_segments"])
print(f"finished job of {segs} segments: the same upload command again, median of {runs}")
print(f"  k5up (HEAD + listing + compare, process start included): {k * 1000:7.0f} ms")
print(f"  curl, one JSON listing of the segments:                 {curl * 1000:7.0f} ms")
print(f"  swift list (python-swiftclient) of the segments:         {sw * 1000:7.0f} ms")
print(f"  ratios: k5up/curl = {k / curl:.2f}, k5up/swift = {k / sw:.2f}")
subprocess.run([k5up, "abort", "--purge", job], capture_output=True)
PY
