#!/usr/bin/python3
"""A read-only FUSE pass-through of SRC at MOUNT whose reads fail with EIO, the way
a failing disk's do, for bytes [LO, HI) of every file while SRC/.eio exists. When SRC/.eio holds a
number K, the first K reads of that range succeed and only later ones fail (a
sector that reads once, then not again: the hash read passes, the send read fails).
Removing SRC/.eio "repairs the disk". While SRC/.slow exists (holding an offset),
every read at or past that offset takes 0.2 s more: a slow disk. While SRC/.reads
exists, every read is appended to it as "OFFSET SIZE", so a test can see what was
read from the disk.
Test support for k5up (python3-fusepy).

usage: eiofs.py SRC MOUNT LO HI
"""
import errno
import os
import sys
import time

from fusepy import FUSE, FuseOSError, Operations


class EioFs(Operations):
    def __init__(self, root, lo, hi):
        self.root, self.lo, self.hi = root, lo, hi
        self.hits = 0

    def getattr(self, path, fh=None):
        st = os.lstat(self.root + path)
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid")
        out = {k: getattr(st, k) for k in keys}
        out["st_mtime"] = st.st_mtime_ns / 1e9
        return out

    def readdir(self, path, fh):
        return [".", ".."] + [n for n in os.listdir(self.root + path) if n not in (".eio", ".slow", ".reads")]

    def open(self, path, flags):
        return os.open(self.root + path, os.O_RDONLY)

    def read(self, path, size, off, fh):
        eio = os.path.join(self.root, ".eio")
        if off < self.hi and off + size > self.lo and os.path.exists(eio):
            self.hits += 1
            try:
                with open(eio) as f:
                    spare = int(f.read().strip() or 0)
            except (OSError, ValueError):
                spare = 0
            if self.hits > spare:
                raise FuseOSError(errno.EIO)
        log = os.path.join(self.root, ".reads")
        if os.path.exists(log):
            with open(log, "a") as f:
                f.write("%d %d\n" % (off, size))
        try:
            with open(os.path.join(self.root, ".slow")) as f:
                if off + size > int(f.read() or 0):
                    time.sleep(0.2)
        except (OSError, ValueError):
            pass
        return os.pread(fh, size, off)

    def release(self, path, fh):
        os.close(fh)


if __name__ == "__main__":
    src, mnt, lo, hi = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    # direct_io: every read reaches us, none is served from the page cache.
    FUSE(EioFs(src, lo, hi), mnt, foreground=True, ro=True, direct_io=True)
