#!/usr/bin/python3
"""Zeros benchmark (not part of the tests; see bench/zeros.sh): an ext4 image made
with `mkfs.ext4 -d` from a directory of real files (sparse), and a fully allocated
copy of it (`cp --sparse=never`), uploaded by k5up, python-swiftclient and rclone
through bench/flaplink.py used as a plain counting relay (no cap, no outage).

For each (image, tool): completed? (object read back with the image's MD5), wall
time, bytes on the wire / bytes of data (data = 4 KiB blocks that are not all
zeros), bytes the tool read from files (`rchar` of /proc/PID/io, read before the
process is reaped) and from storage (`read_bytes`), and the account's
X-Container-Bytes-Used of the target and its segment container (the server's
storage for the object).
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

from flaky import tb_env  # bench/ is the script's directory, so on sys.path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20
GIB = 1 << 30


def login(auth, user, key):
    req = urllib.request.Request(auth, headers={"X-Auth-User": user, "X-Auth-Key": key})
    with urllib.request.urlopen(req) as r:
        return r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]


def stored_bytes(url, token, container):
    """X-Container-Bytes-Used of the container and its _segments container: what the
    server stores for the object (manifests, segments, zero objects)."""
    total = 0
    for c in (container, container + "_segments"):
        req = urllib.request.Request(f"{url}/{urllib.request.quote(c)}", method="HEAD",
                                     headers={"X-Auth-Token": token})
        try:
            with urllib.request.urlopen(req) as r:
                total += int(r.headers.get("X-Container-Bytes-Used", "0"))
        except urllib.error.HTTPError:
            pass
    return total


def md5_of(url, token, container, obj):
    req = urllib.request.Request(f"{url}/{container}/{urllib.request.quote(obj)}", headers={"X-Auth-Token": token})
    h, n = hashlib.md5(), 0
    try:
        with urllib.request.urlopen(req) as r:
            while True:
                b = r.read(8 * MIB)
                if not b:
                    break
                h.update(b)
                n += len(b)
    except urllib.error.HTTPError:
        return None, 0
    return h.hexdigest(), n


def data_and_md5(path):
    """Bytes in 4 KiB blocks that are not all zero (looked for in the file's data
    extents only: holes hold none), and the whole file's MD5."""
    zero = bytes(4096)
    data = 0
    with open(path, "rb") as f:
        fd, size, off = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while off < size:
            try:
                start = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            f.seek(start)
            left = end - start
            while left > 0:
                b = f.read(min(8 * MIB, left))
                if not b:
                    break
                left -= len(b)
                data += sum(len(b[i:i + 4096]) for i in range(0, len(b), 4096) if b[i:i + 4096] != zero[:len(b[i:i + 4096])])
            off = end
        h = hashlib.md5()
        f.seek(0)
        while True:
            b = f.read(8 * MIB)
            if not b:
                break
            h.update(b)
    return data, h.hexdigest()


def run_measured(cmd, env, timeout):
    """Runs cmd; returns (rc, wall, rchar, read_bytes), /proc/PID/io read before reaping."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = t0 + timeout
    io = {}
    while True:
        try:
            r = os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        except ChildProcessError:
            r = None
        if r is not None:
            break
        if time.monotonic() > deadline:
            p.kill()
            break
        time.sleep(0.1)
    try:
        for line in open(f"/proc/{p.pid}/io"):
            k, v = line.split(":")
            io[k.strip()] = int(v)
    except OSError:
        pass
    rc = p.wait()
    wall = time.monotonic() - t0
    err = p.stderr.read().decode(errors="replace")
    return rc, wall, io.get("rchar", 0), io.get("read_bytes", 0), err


class Bench:
    """What every measured upload shares: the testbed, the work directory, a counter."""

    def __init__(self, a, work):
        env = tb_env()
        self.a, self.work, self.n = a, work, 0
        self.auth, self.user, self.key = env["ST_AUTH"], env["ST_USER"], env["ST_KEY"]
        self.upstream = int(self.auth.split(":")[2].split("/")[0])
        self.url, self.token = login(self.auth, self.user, self.key)

    def container(self):
        self.n += 1
        return f"zeros{os.getpid()}-{self.n}"

    def env(self, st_auth):
        e = dict(os.environ, ST_AUTH=st_auth, ST_USER=self.user, ST_KEY=self.key,
                 K5UP_JOURNAL=os.path.join(self.work, f"j{self.n}"))
        for k in [k for k in e if k.startswith("OS_")]:
            del e[k]
        return e

    def measure(self, label, tool, path, c, want_md5, data, extra=(), must=0):
        """Uploads path as c/image.raw with tool through a counting relay; prints a row."""
        a = self.a
        port = 19000 + (os.getpid() + self.n) % 1000
        stats = os.path.join(self.work, f"stats-{self.n}")
        relay = subprocess.Popen(["/usr/bin/python3", os.path.join(ROOT, "bench", "flaplink.py"), str(port),
                                  str(self.upstream), "0", "1", "0", stats])
        time.sleep(0.5)
        via = self.auth.replace(f":{self.upstream}/", f":{port}/")
        e = self.env(via)
        if tool.startswith("k5up"):
            cmd = [a.k5up, "upload", path, "-c", c, "-o", "image.raw", "--no-progress"] + list(extra)
            cmd += ["--manifest", "dlo"] if tool == "k5up-dlo" else []
        elif tool == "swift":
            cmd = [a.swift, "-A", via, "-U", self.user, "-K", self.key, "upload", c, path,
                   "--object-name", "image.raw", "--use-slo", "-S", str(256 * MIB)]
        else:
            e.update({"RCLONE_CONFIG_F_TYPE": "swift", "RCLONE_CONFIG_F_USER": self.user,
                      "RCLONE_CONFIG_F_KEY": self.key, "RCLONE_CONFIG_F_AUTH": via})
            cmd = ["rclone", "copyto", path, f"f:{c}/image.raw"]
        rc, wall, rchar, read_bytes, err = run_measured(cmd, e, a.timeout_s)
        time.sleep(1.2)
        st = json.load(open(stats)) if os.path.exists(stats) else {"forwarded": 0}
        relay.kill()
        relay.wait()
        got, length = md5_of(self.url, self.token, c, "image.raw")
        ok = rc == 0 and got == want_md5 and length == a.size_gib * GIB
        time.sleep(2)  # container stats follow the object servers' updates
        used = stored_bytes(self.url, self.token, c)
        wire = f"{st['forwarded'] / data:.3f}" + (f" ({st['forwarded'] / must:.2f} of the changed segments)" if must else "")
        print(f"| {label} | {tool}{' ' + ' '.join(extra[:1]) if extra else ''} | {'yes' if ok else 'NO'} | {wall:.0f} "
              f"| {wire} | {rchar / GIB:.2f} | {read_bytes / GIB:.2f} | {used / GIB:.2f} |", flush=True)
        if not ok:
            print(f"  ({tool} rc {rc}: {err.strip()[-300:]})", flush=True)

    def clean(self, c):
        for cont in (c, c + "_segments"):
            subprocess.run([self.a.swift, "-A", self.auth, "-U", self.user, "-K", self.key, "delete", cont],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k5up", default=os.path.join(ROOT, "target", "release", "k5up"))
    ap.add_argument("--swift", required=True)
    ap.add_argument("--size-gib", type=int, default=16)
    ap.add_argument("--source-dir", default="/usr/lib/google-cloud-sdk" if os.path.isdir("/usr/lib/google-cloud-sdk") else "/usr/lib/python3")
    ap.add_argument("--tools", default="k5up,k5up-dlo,swift,rclone")
    ap.add_argument("--timeout-s", type=float, default=3600)
    ap.add_argument("--change-pct", type=float, default=2.0, help="percent of data blocks version 2 rewrites")
    ap.add_argument("--images", default="sparse,allocated,v2", help="which rows: sparse, allocated, v2")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="k5up-zeros.", dir="/var/tmp")
    try:
        b = Bench(a, work)
        rows = a.images.split(",")
        img = os.path.join(work, "root.img")
        with open(img, "wb") as f:
            f.truncate(a.size_gib * GIB)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-d", a.source_dir, img], check=True)
        full = os.path.join(work, "root.full")
        if "allocated" in rows:
            subprocess.run(["cp", "--sparse=never", img, full], check=True)
        data, md5 = data_and_md5(img)
        alloc = os.stat(img).st_blocks * 512
        print(f"zeros bench: {a.size_gib} GiB ext4 image of {a.source_dir}: {data / GIB:.2f} GiB of data "
              f"(4 KiB blocks not all zero), {alloc / GIB:.2f} GiB allocated when sparse")
        print("| image | tool | completed | wall s | wire / data | read (rchar) GiB | read from storage GiB | server stores GiB |")
        print("|---|---|---|---|---|---|---|---|")
        for label, path in (("sparse", img), ("allocated", full)):
            if label not in rows:
                continue
            for tool in a.tools.split(","):
                c = b.container()
                b.measure(label, tool, path, c, md5, data)
                b.clean(c)
        if "v2" not in rows:
            return
        # Version 2: a few percent of the data blocks rewritten; k5up with --base (its
        # v1 uploaded first), the peers upload it whole (they have no such thing).
        v2 = os.path.join(work, "root-v2.img")
        subprocess.run(["cp", "--sparse=always", img, v2], check=True)
        changed = rewrite(v2, a.change_pct)
        v2_md5 = data_and_md5(v2)[1]
        label = f"v2 ({len(changed)} blocks rewritten)"
        for tool in (t for t in a.tools.split(",") if t != "k5up-dlo"):
            c = b.container()
            if tool == "k5up":
                subprocess.run([a.k5up, "upload", img, "-c", c, "-o", "v1.raw", "--no-progress"], env=b.env(b.auth),
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                must, at = 0, 0
                for length in leaves(b.url, b.token, c, "v1.raw"):
                    must += length if any(at <= o < at + length for o in changed) else 0
                    at += length
                b.measure(label, tool, v2, c, v2_md5, data, ("--base", f"{c}/v1.raw"), must)
            else:
                b.measure(label, tool, v2, c, v2_md5, data)
            b.clean(c)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def rewrite(path, pct):
    """Rewrites pct percent of the data blocks (4 KiB, not all zero), in runs of 16
    blocks spread over the image (a patched file rewrites extents, not single blocks).
    Returns the offsets rewritten."""
    zero = bytes(4096)
    blocks = []
    with open(path, "rb") as f:
        off = 0
        while True:
            b = f.read(4096)
            if not b:
                break
            if b != zero[:len(b)]:
                blocks.append(off)
            off += len(b)
    runs = max(1, int(len(blocks) * pct / 100 / 16))
    picked = []
    with open(path, "r+b") as f:
        for k in range(runs):
            start = blocks[(k * len(blocks)) // runs]
            for j in range(16):
                f.seek(start + j * 4096)
                f.write(os.urandom(4096))
                picked.append(start + j * 4096)
    return picked


def leaves(url, token, container, obj):
    """Lengths of the segments an SLO reads, in order (sub-manifests followed)."""
    req = urllib.request.Request(f"{url}/{container}/{urllib.request.quote(obj)}?multipart-manifest=get",
                                 headers={"X-Auth-Token": token})
    with urllib.request.urlopen(req) as r:
        entries = json.load(r)
    out = []
    for e in entries:
        rng = e.get("range")
        if e.get("sub_slo") and not rng:
            c, o = e["name"].lstrip("/").split("/", 1)
            out += leaves(url, token, c, o)
        elif rng:
            a_, b_ = (int(x) for x in rng.split("-"))
            out.append(b_ - a_ + 1)
        else:
            out.append(e["bytes"])
    return out


if __name__ == "__main__":
    main()
