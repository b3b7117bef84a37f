#!/usr/bin/python3
"""Flaky-link benchmark (not part of the tests; see bench/flaky.sh): k5up with no
tuning flags, python-swiftclient and rclone (defaults and 16 MiB segments) upload the
same random image through bench/flaplink.py, an emulated link with a rate cap shared
by all connections and periodic outages that reset every open connection.

For each (link, tool): completed? (object read back with the source's MD5), wall time,
goodput = bytes confirmed / (rate x seconds the link was up during the run), and bytes
on the wire / size (request bytes the link carried). A tool that has not finished by
--timeout-s is stopped and counted as not completed.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20


def tb_env():
    env = {}
    for line in open(os.path.join(ROOT, "testbed", "run", "env")):
        if line.startswith("export ") and "=" in line:
            k, v = line[len("export "):].strip().split("=", 1)
            env[k] = v
    return env


def up_seconds(wall, up, down):
    """Seconds the link was up during [0, wall], the schedule starting up at 0."""
    full, rest = divmod(wall, up + down)
    return full * up + min(rest, up)


def md5_of(auth, user, key, container, obj):
    req = urllib.request.Request(auth, headers={"X-Auth-User": user, "X-Auth-Key": key})
    with urllib.request.urlopen(req) as r:
        url, token = r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]
    req = urllib.request.Request(f"{url}/{container}/{urllib.request.quote(obj)}", headers={"X-Auth-Token": token})
    h, n = hashlib.md5(), 0
    try:
        with urllib.request.urlopen(req) as r:
            while True:
                b = r.read(MIB)
                if not b:
                    break
                h.update(b)
                n += len(b)
    except urllib.error.HTTPError:
        return None, 0
    return h.hexdigest(), n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k5up", default=os.path.join(ROOT, "target", "release", "k5up"))
    ap.add_argument("--swift", required=True)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rate-mib", type=float, default=4)
    ap.add_argument("--links", default="45:5,20:5,10:2", help="up:down seconds, comma-separated")
    ap.add_argument("--tools", default="k5up,k5up-8M,swift,swift-16M,rclone,rclone-16M",
                    help="k5up (no flags), k5up-<N>M (hand-tuned: N MiB segments, 2 streams), swift[-16M], rclone[-16M]")
    ap.add_argument("--timeout-s", type=float, default=900)
    a = ap.parse_args()
    env = tb_env()
    auth, user, key = env["STOCK_ST_AUTH"], env["STOCK_ST_USER"], env["STOCK_ST_KEY"]
    upstream = int(auth.split("://")[1].split("/")[0].split(":")[1])
    work = tempfile.mkdtemp(prefix="k5up-flaky.")
    img = os.path.join(work, "image.raw")
    size = a.size_mib * MIB
    subprocess.run(f"head -c {size} /dev/urandom > {img}", shell=True, check=True)
    md5 = subprocess.run(["md5sum", img], capture_output=True, text=True).stdout.split()[0]
    rate = a.rate_mib * MIB
    print(f"flaky-link bench: {a.size_mib} MiB random image, link {a.rate_mib} MiB/s shared, timeout {a.timeout_s:.0f} s")
    print("| link (up s, down s) | tool | completed | wall s | goodput | wire / size | outages |")
    print("|---|---|---|---|---|---|---|")
    n = 0
    try:
        for link in a.links.split(","):
            up, down = (float(x) for x in link.split(":"))
            for tool in a.tools.split(","):
                n += 1
                port = 19000 + (os.getpid() + n) % 1000
                stats = os.path.join(work, f"stats-{n}")
                relay = subprocess.Popen(["/usr/bin/python3", os.path.join(ROOT, "bench", "flaplink.py"), str(port),
                                          str(upstream), str(rate), str(up), str(down), stats])
                time.sleep(0.5)
                t0 = time.monotonic()
                via = auth.replace(f":{upstream}/", f":{port}/")
                c = f"flaky{os.getpid()}-{n}"
                e = dict(os.environ, ST_AUTH=via, ST_USER=user, ST_KEY=key, K5UP_JOURNAL=os.path.join(work, f"j{n}"))
                for k in [k for k in e if k.startswith("OS_")]:
                    del e[k]
                seg16 = tool.endswith("-16M")
                if tool.startswith("k5up"):
                    cmd = [a.k5up, "upload", img, "-c", c, "-o", "image.raw", "--no-progress"]
                    if tool != "k5up":  # hand-tuned, e.g. k5up-4M: 4 MiB segments, 2 streams
                        cmd += ["--segment-size", tool.split("-")[1] + "iB", "--concurrency", "2"]
                elif tool.startswith("swift"):
                    cmd = [a.swift, "-A", via, "-U", user, "-K", key, "upload", c, img, "--object-name", "image.raw"]
                    cmd += ["--use-slo", "-S", str(16 * MIB)] if seg16 else []
                else:
                    e.update({"RCLONE_CONFIG_F_TYPE": "swift", "RCLONE_CONFIG_F_USER": user,
                              "RCLONE_CONFIG_F_KEY": key, "RCLONE_CONFIG_F_AUTH": via})
                    cmd = ["rclone", "copyto", img, f"f:{c}/image.raw"] + (["--swift-chunk-size", "16Mi"] if seg16 else [])
                p = subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    rc = p.wait(timeout=a.timeout_s)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                    rc = None
                wall = time.monotonic() - t0
                time.sleep(1.2)
                st = json.load(open(stats)) if os.path.exists(stats) else {"forwarded": 0, "outages": 0}
                relay.kill()
                relay.wait()
                got, length = md5_of(auth, user, key, c, "image.raw")
                ok = rc == 0 and got == md5 and length == size
                goodput = size / (rate * up_seconds(wall, up, down)) if ok else 0.0
                print(f"| ({up:.0f}, {down:.0f}) | {tool} | {'yes' if ok else 'NO' if rc is not None else 'NO (timeout)'} "
                      f"| {wall:.0f} | {goodput:.2f} | {st['forwarded'] / size:.2f} | {st['outages']} |", flush=True)
                for cont in (c, c + "_segments"):
                    subprocess.run([a.swift, "-A", auth, "-U", user, "-K", key, "delete", cont],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
