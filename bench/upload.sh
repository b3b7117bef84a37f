#!/usr/bin/env bash
# Benchmark: upload a random file to the testbed's stock Swift proxy and report wall
# time, throughput, client CPU-seconds per GiB and peak RSS (not part of the tests).
#   BENCH_SIZE_GIB (4)  BENCH_SEGMENT (256MiB)  BENCH_CONCURRENCY (4)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${BENCH_SIZE_GIB:-4}
seg=${BENCH_SEGMENT:-256MiB}
conc=${BENCH_CONCURRENCY:-4}
. bench/lib.sh
bench_start $((size << 30))
c=bench-$$
/usr/bin/python3 - "$work" "$c" "$seg" "$conc" <<'PY'
import os, resource, subprocess, sys, time
work, c, seg, conc = sys.argv[1:5]
t = time.time()
p = subprocess.run(["target/release/k5up", "upload", work + "/img", "-c", c, "--segment-size", seg,
                    "--concurrency", conc, "--no-progress"], capture_output=True, text=True)
wall = time.time() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
size = os.path.getsize(work + "/img")
gib = size / 2**30
print(p.stdout.strip())
if p.returncode != 0:
    print(p.stderr); sys.exit(1)
print(f"size {gib:.2f} GiB, segment {seg}, concurrency {conc}")
print(f"wall {wall:.1f} s, {size / 2**20 / wall:.0f} MiB/s, client CPU {(ru.ru_utime + ru.ru_stime) / gib:.2f} s/GiB, peak RSS {ru.ru_maxrss / 1024:.0f} MiB")
PY
bench_purge
