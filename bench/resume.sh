#!/usr/bin/env bash
# Benchmark (not part of the tests): how fast `k5up resume` gets going on a big job.
# A job of BENCH_SEGMENTS (10000) segments of 1 MiB (k5up's smallest) is uploaded to the stock proxy
# and SIGKILLed at half; then `resume` is timed up to the moment the pool starts
# uploading, and the bytes it reads from the file are counted (/proc/PID/io): a
# resume must not re-read what was confirmed.
set -euo pipefail
cd "$(dirname "$0")/.."
segments=${BENCH_SEGMENTS:-10000}
. bench/lib.sh
bench_start $((segments * 1048576))
/usr/bin/python3 - "$work" "resume-$$" <<'PY'
import json, os, subprocess, sys, time
work, c = sys.argv[1:3]
k5up = "target/release/k5up"
img = work + "/img"
size = os.path.getsize(img)
args = [k5up, "upload", img, "-c", c, "--segment-size", "1MiB", "--concurrency", "8", "--no-progress"]
job = [l.split()[1] for l in subprocess.run(args + ["--dry-run"], capture_output=True, text=True).stdout.splitlines()
       if l.startswith("job")][0]
p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while p.poll() is None:
    try:
        st = json.loads(subprocess.run([k5up, "status", job, "--json"], capture_output=True, text=True).stdout)
        if st["bytes_confirmed"] >= size // 2:
            p.kill()
            break
    except (ValueError, KeyError):
        pass
    time.sleep(0.2)
p.wait()
st = json.loads(subprocess.run([k5up, "status", job, "--json"], capture_output=True, text=True).stdout)
confirmed, total = st["segments_confirmed"], st["segments_total"]
print(f"killed with {confirmed} of {total} segments confirmed")
t0 = time.time()
r = subprocess.Popen([k5up, "resume", job, "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                     text=True)
started, rchar, lines = None, 0, []


def watch():
    global started
    for line in r.stderr:
        lines.append(line)
        if started is None and "segments to send" in line:
            started = time.time() - t0


import threading
th = threading.Thread(target=watch)
th.start()
while r.poll() is None:
    try:
        io = open(f"/proc/{r.pid}/io").read()
        rchar = int([l for l in io.splitlines() if l.startswith("rchar")][0].split()[1])
    except (OSError, IndexError):
        pass
    time.sleep(0.005)
th.join()
buf = "".join(lines)
wall = time.time() - t0
if r.returncode != 0:
    print(buf); sys.exit(1)
left = size - confirmed * 65536
print(f"resume of a {total}-segment job: uploading after {started:.2f} s (whole resume {wall:.1f} s)")
print(f"bytes read from the file by the resume: {rchar / 2**20:.0f} MiB; "
      f"still to send: {left / 2**20:.0f} MiB (hash + send read it twice: {2 * left / 2**20:.0f} MiB); "
      f"confirmed before the kill: {confirmed * 65536 / 2**20:.0f} MiB")
PY
bench_purge
