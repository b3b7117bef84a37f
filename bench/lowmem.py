#!/usr/bin/python3
"""Small machine, slow disk (see bench/lowmem.sh, which sets everything up and calls this).

k5up and python-swiftclient upload the same random file to the testbed's stock Swift
proxy, alternating, each run inside a cgroup with a memory limit and, in the second
case, a read-rate limit on the file's block device (cgroup v1 memory + blkio, or v2
memory.max + io.max, whichever the machine has). The page cache is dropped before
every run. Per run: bytes read from storage by the uploader (its rusage ru_inblock,
i.e. /proc/PID/io read_bytes of it and its reaped children) divided by the file size,
wall time, and wall time divided by the disk's limit (file size / read rate).
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from testbed_env import ROOT, tb_env


class Cgroup:
    """One cgroup (v1: memory and blkio hierarchies; v2: the unified one)."""

    def __init__(self, name, mem_bytes, dev, read_bps):
        self.v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers") and not os.path.isdir("/sys/fs/cgroup/memory")
        if self.v2:
            root = "/sys/fs/cgroup"
            with open(os.path.join(root, "cgroup.subtree_control"), "w") as f:
                f.write("+memory +io")
            self.dirs = [os.path.join(root, name)]
        else:
            self.dirs = [f"/sys/fs/cgroup/memory/{name}", f"/sys/fs/cgroup/blkio/{name}"]
        for d in self.dirs:
            os.makedirs(d, exist_ok=True)
        self.set(mem_bytes, dev, read_bps)

    def set(self, mem_bytes, dev, read_bps):
        def w(path, value):
            with open(path, "w") as f:
                f.write(value)

        if self.v2:
            d = self.dirs[0]
            w(os.path.join(d, "memory.max"), str(mem_bytes) if mem_bytes else "max")
            w(os.path.join(d, "io.max"), f"{dev} rbps={read_bps or 'max'}")
        else:
            mem, blk = self.dirs
            w(os.path.join(mem, "memory.limit_in_bytes"), str(mem_bytes) if mem_bytes else "-1")
            w(os.path.join(blk, "blkio.throttle.read_bps_device"), f"{dev} {read_bps or 0}")

    def procs(self):
        return [os.path.join(d, "cgroup.procs") for d in self.dirs]

    def remove(self):
        for d in self.dirs:
            try:
                os.rmdir(d)
            except OSError:
                pass


def drop_caches():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")


def run_in(cg, cmd, env):
    """Runs cmd inside cg; returns (rc, wall s, bytes read from storage, peak RSS MiB, stderr tail)."""
    err = tempfile.TemporaryFile()
    t0 = time.time()
    pid = os.fork()
    if pid == 0:
        for p in cg.procs():
            with open(p, "w") as f:
                f.write(str(os.getpid()))
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.dup2(err.fileno(), 2)
        os.execvpe(cmd[0], cmd, env)
    _, status, ru = os.wait4(pid, 0)
    wall = time.time() - t0
    err.seek(0)
    tail = err.read()[-1500:].decode(errors="replace")
    return os.waitstatus_to_exitcode(status), wall, ru.ru_inblock * 512, ru.ru_maxrss / 1024, tail


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gib", type=int, default=2)
    ap.add_argument("--mem-mib", type=int, default=768)
    ap.add_argument("--read-mbps", type=int, default=100, help="MB/s (10^6 bytes)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--k5up", default=os.path.join(ROOT, "target", "release", "k5up"))
    ap.add_argument("--swift", default="swift")
    ap.add_argument("--digest", default=None,
                    help="also run k5up with --digest ALGO (a whole-image digest, as an import needs)")
    ap.add_argument("--workdir", default=None, help="where the file is made (its disk is the one limited)")
    a = ap.parse_args()
    env0 = tb_env()
    auth, user, key = env0["ST_AUTH"], env0["ST_USER"], env0["ST_KEY"]
    work = tempfile.mkdtemp(prefix="k5up-lowmem.", dir=a.workdir or ROOT)
    src = os.path.join(work, "image.raw")
    size = a.size_gib << 30
    st = os.stat(work)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    # A partition's limit must name its disk (cgroups take whole devices).
    part = f"/sys/dev/block/{dev}/partition"
    if os.path.exists(part):
        parent = os.path.realpath(f"/sys/dev/block/{dev}/..")
        dev = open(os.path.join(parent, "dev")).read().strip()
    print(f"== {a.size_gib} GiB random file in {work} (device {dev})", flush=True)
    subprocess.run(f"head -c {size} /dev/urandom > {src}", shell=True, check=True)
    cg = Cgroup(f"k5up-lowmem-{os.getpid()}", 0, dev, 0)
    cases = [("memory limit", a.mem_mib << 20, 0), ("memory and read-rate limits", a.mem_mib << 20,
                                                     a.read_mbps * 1000 * 1000)]
    tools = ["k5up"] + ([f"k5up --digest {a.digest}"] if a.digest else []) + ["swift"]
    res = {}
    n = 0
    try:
        for case, mem, bps in cases:
            cg.set(mem, dev, bps)
            for i in range(a.runs):
                for t in (tools if i % 2 == 0 else tools[::-1]):
                    n += 1
                    c = f"lowmem{os.getpid()}-{t}-{n}"
                    e = dict(os.environ)
                    for k in [k for k in e if k.startswith("OS_")]:
                        del e[k]
                    e.update({"ST_AUTH": auth, "ST_USER": user, "ST_KEY": key})
                    c = c.replace(" ", "").replace("--", "-")
                    if t.startswith("k5up"):
                        e["K5UP_JOURNAL"] = os.path.join(work, "journal-" + c)
                        cmd = [a.k5up, "upload", src, "-c", c, "--concurrency", str(a.concurrency), "--no-progress"]
                        cmd += t.split()[1:]
                    else:
                        cmd = [a.swift, "upload", c, src, "--object-name", "image.raw", "--use-slo", "-S",
                               str(256 << 20), "--segment-threads", str(a.concurrency)]
                    drop_caches()
                    rc, wall, read, rss, err = run_in(cg, cmd, e)
                    if rc != 0:
                        sys.exit(f"{t} failed ({case}): rc {rc}: {err}")
                    res.setdefault((case, t), []).append((read / size, wall, rss))
                    limit = size / bps if bps else None
                    print(f"   {case}: {t}: read {read / size:.2f}x the file, {wall:.1f} s"
                          + (f" = {wall / limit:.2f}x the disk's limit" if limit else "")
                          + f", peak RSS {rss:.0f} MiB", flush=True)
                    for cc in (c, c + "_segments"):
                        subprocess.run([a.swift, "-A", auth, "-U", user, "-K", key, "delete", cc],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        cg.remove()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{a.size_gib} GiB random file, page cache dropped before each run, {a.runs} alternating run(s) "
          f"per tool (median shown), cgroup {'v2' if cg.v2 else 'v1'}\n")
    print("| case | tool | bytes read from storage / file | wall s | wall / disk's limit | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for case, mem, bps in cases:
        limit = size / bps if bps else None
        for t in tools:
            rs = res[(case, t)]
            r, w, m = (statistics.median(x[k] for x in rs) for k in range(3))
            print(f"| {case} ({a.mem_mib} MiB" + (f", {a.read_mbps} MB/s" if bps else "") + f") | {t} | {r:.2f} | "
                  f"{w:.1f} | " + (f"{w / limit:.2f}" if limit else "–") + f" | {m:.0f} |")
        if limit:
            print(f"| | the disk's limit ({a.size_gib} GiB ÷ {a.read_mbps} MB/s) | – | {limit:.1f} | 1.00 | – |")


if __name__ == "__main__":
    main()
