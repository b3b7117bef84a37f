#!/usr/bin/python3
"""Side-by-side upload benchmark against the testbed's stock Swift proxy or its Ceph RGW (see
bench/compare.sh, which sets everything up and calls this).

For each tool, alternating runs, the same random file: wall time, MiB/s, client
CPU-seconds per GiB, server CPU-seconds per GiB (Swift's proxy, object, container and
account servers, read from /proc), peak RSS, and whether the object reads back with
the file's MD5. Then, per tool, a kill at half and a rerun of the same command:
bytes sent (counted by a relay) / file size.
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from testbed_env import ROOT, TB, tb_env
CLK = os.sysconf("SC_CLK_TCK")
# The store's server processes (their CPU is counted), per --store.
SERVERS = {"swift": ["proxy-stock", "object-server", "container-server", "account-server"],
           "rgw": ["ceph-rgw", "ceph-osd", "ceph-mon"]}
STORE = "swift"


def proc_stats():
    """pid -> (ppid, cpu seconds) for every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            raw = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        rest = raw[raw.rindex(")") + 2:].split()
        out[int(d)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK)
    return out


def server_cpu():
    """CPU seconds used so far by the Swift servers and their workers."""
    roots = set()
    for name in SERVERS[STORE]:
        try:
            roots.add(int(open(os.path.join(TB, "pids", name)).read().split()[0]))
        except (OSError, ValueError):
            pass
    stats = proc_stats()
    total, seen = 0.0, set()
    frontier = set(roots)
    while frontier:
        pid = frontier.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid][1]
        frontier |= {p for p, (pp, _) in stats.items() if pp == pid}
    return total


class Swift:
    def __init__(self, auth, user, key):
        req = urllib.request.Request(auth, headers={"X-Auth-User": user, "X-Auth-Key": key})
        with urllib.request.urlopen(req) as r:
            self.url, self.token = r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]

    def md5(self, container, obj):
        req = urllib.request.Request(f"{self.url}/{container}/{urllib.request.quote(obj)}",
                                     headers={"X-Auth-Token": self.token})
        h, n = hashlib.md5(), 0
        try:
            with urllib.request.urlopen(req) as r:
                while True:
                    b = r.read(1 << 20)
                    if not b:
                        break
                    h.update(b)
                    n += len(b)
        except urllib.error.HTTPError as e:
            return f"HTTP {e.code}", 0
        return h.hexdigest(), n


class Bench:
    def __init__(self, a):
        self.a = a
        self.env = tb_env()
        pre = "RGW_" if a.store == "rgw" else ""
        self.auth = self.env[pre + "ST_AUTH"]
        self.user, self.key = self.env[pre + "ST_USER"], self.env[pre + "ST_KEY"]
        self.work = tempfile.mkdtemp(prefix="k5up-compare.", dir=a.workdir)
        self.file = os.path.join(self.work, "image.raw")
        self.size = a.size_gib << 30
        self.seg = a.segment_mib << 20
        self.n = 0
        print(f"== generating {a.size_gib} GiB of random data", flush=True)
        subprocess.run(f"head -c {self.size} /dev/urandom > {self.file}", shell=True, check=True)
        self.md5 = subprocess.run(["md5sum", self.file], capture_output=True, text=True).stdout.split()[0]
        # The file's pages are written back and in the page cache before any tool runs:
        # the first run must not pay for the write-back of the generated data.
        subprocess.run(["sync"], check=True)

    def auth_env(self, auth=None):
        e = dict(os.environ)
        e.update({"ST_AUTH": auth or self.auth, "ST_USER": self.user, "ST_KEY": self.key})
        for k in [k for k in e if k.startswith("OS_")]:
            del e[k]
        return e

    def command(self, tool, container, obj, auth=None):
        a, conc, env = self.a, str(self.a.concurrency), self.auth_env(auth)
        auth = auth or self.auth
        if tool == "k5up":
            env["K5UP_JOURNAL"] = os.path.join(self.work, "journal-" + container)
            return [a.k5up, "upload", self.file, "-c", container, "--object", obj, "--segment-size",
                    f"{a.segment_mib}MiB", "--concurrency", conc, "--no-progress"], env
        if tool == "swift":
            return [a.swift, "-A", auth, "-U", self.user, "-K", self.key, "upload", container, self.file,
                    "--object-name", obj, "--use-slo", "-S", str(self.seg), "--segment-threads", conc], env
        if tool == "rclone":
            env.update({"RCLONE_CONFIG_BENCH_TYPE": "swift", "RCLONE_CONFIG_BENCH_USER": self.user,
                        "RCLONE_CONFIG_BENCH_KEY": self.key, "RCLONE_CONFIG_BENCH_AUTH": auth})
            return ["rclone", "copyto", self.file, f"bench:{container}/{obj}", "--swift-chunk-size",
                    f"{a.segment_mib}Mi", "--transfers", conc, "--checkers", conc], env
        raise ValueError(tool)

    def curl_ceiling(self, container, obj):
        """Raw parallel curl PUTs of pre-split segments (no hashing), then an SLO manifest."""
        parts = os.path.join(self.work, "parts")
        if not os.path.isdir(parts):
            os.makedirs(parts)
            subprocess.run(["split", "-b", str(self.seg), "-d", "-a", "5", self.file, parts + "/"], check=True)
        sw = Swift(self.auth, self.user, self.key)
        names = sorted(os.listdir(parts))
        script = (f"curl -sf -X PUT -H 'X-Auth-Token: {sw.token}' {sw.url}/{container} >/dev/null; "
                  f"curl -sf -X PUT -H 'X-Auth-Token: {sw.token}' {sw.url}/{container}_segments >/dev/null; "
                  f"cd {parts} && printf '%s\\n' {' '.join(names)} | xargs -P {self.a.concurrency} -I{{}} "
                  f"curl -sf -o /dev/null -X PUT -H 'X-Auth-Token: {sw.token}' -T {{}} "
                  f"{sw.url}/{container}_segments/{obj}/{{}}")
        # size_bytes given: RGW refuses null (Swift takes either).
        manifest = json.dumps([{"path": f"/{container}_segments/{obj}/{n}", "etag": None,
                                "size_bytes": os.path.getsize(os.path.join(parts, n))} for n in names])
        mf = os.path.join(self.work, "manifest.json")
        open(mf, "w").write(manifest)
        script += (f" && curl -sf -o /dev/null -X PUT -H 'X-Auth-Token: {sw.token}' --data-binary @{mf} "
                   f"'{sw.url}/{container}/{obj}?multipart-manifest=put'")
        return ["bash", "-c", script], dict(os.environ)

    def timed(self, cmd, env):
        tf = os.path.join(self.work, "time.out")
        s0 = server_cpu()
        t0 = time.time()
        p = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", tf] + cmd, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.time() - t0
        time.sleep(0.5)  # let the servers' last accounting settle
        srv = server_cpu() - s0
        u, s, m = open(tf).read().split()[-3:]
        return {"rc": p.returncode, "wall": wall, "cpu": float(u) + float(s), "rss": int(m) / 1024,
                "server": srv, "err": p.stderr[-2000:]}

    def cleanup(self, container):
        e = self.auth_env()
        for c in (container, container + "_segments"):
            subprocess.run([self.a.swift, "-A", self.auth, "-U", self.user, "-K", self.key, "delete", c],
                           env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(os.path.join(self.work, "journal-" + container), ignore_errors=True)

    def verify(self, container, obj):
        if self.a.no_verify:
            return "not checked"
        m, n = Swift(self.auth, self.user, self.key).md5(container, obj)
        return "yes" if (m, n) == (self.md5, self.size) else f"NO ({m}, {n} bytes)"

    def run_once(self, tool):
        self.n += 1
        c, o = f"cmp{os.getpid()}-{tool}-{self.n}", "image.raw"
        cmd, env = self.curl_ceiling(c, o) if tool == "curl" else self.command(tool, c, o)
        r = self.timed(cmd, env)
        r["ok"] = self.verify(c, o) if r["rc"] == 0 else f"exit {r['rc']}: {r['err'].strip()[-300:]}"
        self.cleanup(c)
        return r

    def kill_rerun(self, tool):
        """Kill at half (bytes counted by a relay), rerun the same command: bytes sent / size."""
        port = 18000 + os.getpid() % 1000
        count = os.path.join(self.work, "count")
        # The link relay with no rate cap and no outages: only its byte count is used.
        relay = subprocess.Popen(["/usr/bin/python3", os.path.join(ROOT, "bench", "flaplink.py"), str(port),
                                  self.auth.split(":")[2].split("/")[0], "0", "0", "0", count])
        try:
            time.sleep(0.5)
            auth = self.auth.replace(self.auth.split("/")[2], f"127.0.0.1:{port}")
            self.n += 1
            c, o = f"cmpkill{os.getpid()}-{tool}-{self.n}", "image.raw"
            cmd, env = self.command(tool, c, o, auth)
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
            while p.poll() is None:
                sent = forwarded(count)
                if sent >= self.size // 2:
                    os.killpg(p.pid, signal.SIGKILL)
                    break
                time.sleep(0.05)
            p.wait()
            time.sleep(1)
            r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(0.5)
            total = forwarded(count)
            ok = self.verify(c, o) if r.returncode == 0 else f"exit {r.returncode}: {r.stderr.strip()[-300:]}"
            self.cleanup(c)
            return total / self.size, ok
        finally:
            relay.kill()
            relay.wait()


def forwarded(stats):
    """Request bytes the relay (bench/flaplink.py) forwarded so far."""
    try:
        return json.load(open(stats))["forwarded"]
    except (OSError, ValueError, KeyError):
        return 0


def md5_floor():
    try:
        out = subprocess.run(["openssl", "speed", "-seconds", "2", "-bytes", "16384", "md5"],
                             capture_output=True, text=True).stdout
        kbs = float([l for l in out.splitlines() if l.startswith("md5")][0].split()[-1].rstrip("k"))
        return (1 << 30) / (kbs * 1000)
    except (OSError, IndexError, ValueError):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gib", type=int, default=4)
    ap.add_argument("--segment-mib", type=int, default=256)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--tools", default="k5up,swift,rclone,curl")
    ap.add_argument("--no-kill", action="store_true")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--k5up", default=os.path.join(ROOT, "target", "release", "k5up"))
    ap.add_argument("--swift", default="swift")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--store", choices=["swift", "rgw"], default="swift",
                    help="the testbed's stock Swift proxy, or Ceph RGW (testbed/rgw); on RGW there is no "
                         "kill phase: RGW hands out its own storage URL, so the counting relay would be bypassed")
    a = ap.parse_args()
    global STORE
    STORE = a.store
    if a.store == "rgw":
        a.no_kill = True
    tools = a.tools.split(",")
    b = Bench(a)
    floor = md5_floor()
    res = {t: [] for t in tools}
    try:
        for i in range(a.runs):
            # alternate the order too, so no tool always runs first or last
            for t in (tools if i % 2 == 0 else tools[::-1]):
                print(f"== run {i + 1}: {t}", flush=True)
                r = b.run_once(t)
                res[t].append(r)
                print(f"   {r['wall']:.1f} s, {a.size_gib * 1024 / r['wall']:.0f} MiB/s, client "
                      f"{r['cpu'] / a.size_gib:.2f} CPU-s/GiB, server {r['server'] / a.size_gib:.2f} CPU-s/GiB, "
                      f"RSS {r['rss']:.0f} MiB, reads back: {r['ok']}", flush=True)
        kills = {}
        if not a.no_kill:
            for t in [t for t in tools if t != "curl"]:
                print(f"== kill at half and rerun: {t}", flush=True)
                kills[t] = b.kill_rerun(t)
                print(f"   bytes sent / size = {kills[t][0]:.3f}, reads back: {kills[t][1]}", flush=True)
    finally:
        shutil.rmtree(b.work, ignore_errors=True)

    gib = a.size_gib
    print(f"\n{a.store}: {a.size_gib} GiB random file, {a.segment_mib} MiB segments, {a.concurrency} in parallel, "
          f"{a.runs} alternating run(s) per tool (median shown)\n")
    print("| tool | wall s | MiB/s | client CPU-s/GiB | server CPU-s/GiB | peak RSS MiB | reads back |")
    print("|---|---|---|---|---|---|---|")
    med = {}
    for t in tools:
        rs = res[t]
        m = {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "rss", "server")}
        med[t] = m
        ok = "yes" if all(r["ok"] == "yes" for r in rs) else "; ".join(sorted({r["ok"] for r in rs}))
        name = "curl (raw parallel PUTs, no hashing)" if t == "curl" else t
        print(f"| {name} | {m['wall']:.1f} | {gib * 1024 / m['wall']:.0f} | {m['cpu'] / gib:.2f} | "
              f"{m['server'] / gib:.2f} | {m['rss']:.0f} | {ok} |")
    if floor:
        print(f"\nopenssl MD5 floor on this machine: {floor:.2f} CPU-s/GiB")
    if "k5up" in med:
        k = med["k5up"]
        rate = {t: gib * 1024 / med[t]["wall"] for t in med}
        for t in [t for t in med if t != "k5up"]:
            print(f"k5up / {t} throughput: {rate['k5up'] / rate[t]:.2f}x; client CPU: "
                  f"{k['cpu'] / med[t]['cpu']:.2f}x")
        if floor:
            print(f"k5up client CPU / MD5 floor: {k['cpu'] / gib / floor:.2f}x")
    if kills:
        print("\n| tool | kill at half, rerun: bytes sent / file size | reads back |")
        print("|---|---|---|")
        for t, (ratio, ok) in kills.items():
            print(f"| {t} | {ratio:.3f} | {ok} |")
    bad = [t for t in tools if any(r["ok"] not in ("yes", "not checked") for r in res[t])]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
