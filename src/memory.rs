//! How much of the source the page cache can hold for this process: the memory
//! the kernel says is available (`MemAvailable`), and, inside a cgroup with a memory
//! limit (v1 `memory.limit_in_bytes`, v2 `memory.max`), that limit less the group's
//! anonymous memory (page cache counts against the limit, and is what is evicted).
//! Reading ahead of the uploads further than this reads the file twice from storage.

use std::path::{Path, PathBuf};

/// Bytes of page cache this process can count on; `None` when nothing says.
/// `K5UP_PAGE_CACHE_ROOM` (a size: `512MiB`) says it instead, where the machine's
/// own figures mislead (a limit k5up cannot see), and for tests.
pub(crate) fn page_cache_room() -> Option<u64> {
    if let Some(v) = std::env::var("K5UP_PAGE_CACHE_ROOM").ok().filter(|v| !v.trim().is_empty()) {
        match crate::units::parse_size(v.trim()) {
            Ok(n) => return Some(n),
            Err(e) => tracing::warn!("K5UP_PAGE_CACHE_ROOM={v} is ignored: {e}"),
        }
    }
    let avail = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| mem_available(&t));
    let group = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| cgroup_room(&t, Path::new("/sys/fs/cgroup"), &|p| std::fs::read_to_string(p).ok()));
    match (avail, group) {
        (Some(a), Some(g)) => Some(a.min(g)),
        (a, g) => a.or(g),
    }
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A limit larger than this is no limit (cgroup v1 writes "no limit" as ~2^63).
const NO_LIMIT: u64 = 1 << 60;

/// The page cache room of this process's memory cgroup, from its `/proc/self/cgroup`
/// text and the cgroup files under `root` (read by `read`): the limit less the
/// group's anonymous memory. `None` without a limit.
fn cgroup_room(proc_cgroup: &str, root: &Path, read: &dyn Fn(&Path) -> Option<String>) -> Option<u64> {
    let num = |p: PathBuf| read(&p).and_then(|t| t.trim().parse::<u64>().ok());
    let stat = |p: PathBuf, key: &str| {
        read(&p).and_then(|t| {
            t.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.parse().ok()))
        })
    };
    for line in proc_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            // v1: the group's own limit, or a parent's (systemd slices, containers):
            // memory.stat's hierarchical_memory_limit is the one that applies.
            let dir = root.join("memory").join(rel);
            let own = num(dir.join("memory.limit_in_bytes"));
            let inherited = stat(dir.join("memory.stat"), "hierarchical_memory_limit");
            let limit = own.into_iter().chain(inherited).min().filter(|&l| l < NO_LIMIT)?;
            let anon = stat(dir.join("memory.stat"), "total_rss").or_else(|| stat(dir.join("memory.stat"), "rss"));
            return Some(limit.saturating_sub(anon.unwrap_or(0)));
        }
        if controllers.is_empty() && line.starts_with("0::") {
            // v2: the least memory.max of the group and its parents.
            let dir = root.join(rel);
            let limit = dir
                .ancestors()
                .take_while(|d| d.starts_with(root))
                .filter_map(|d| num(d.join("memory.max")))
                .min()
                .filter(|&l| l < NO_LIMIT);
            if let Some(limit) = limit {
                return Some(limit.saturating_sub(stat(dir.join("memory.stat"), "anon").unwrap_or(0)));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn files(m: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let m: HashMap<PathBuf, String> = m.iter().map(|(k, v)| (PathBuf::from(k), v.to_string())).collect();
        move |p: &Path| m.get(p).cloned()
    }

    #[test]
    fn mem_available_is_read_in_bytes() {
        let t = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   23377488 kB\n";
        assert_eq!(mem_available(t), Some(23377488 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn a_v1_memory_limit_less_its_anonymous_memory() {
        let pc = "12:blkio:/k5\n4:memory:/k5\n1:name=systemd:/\n";
        let read = files(&[
            ("/cg/memory/k5/memory.limit_in_bytes", "805306368\n"),
            ("/cg/memory/k5/memory.stat", "cache 700000000\nrss 50000000\ntotal_rss 60000000\n"),
        ]);
        assert_eq!(cgroup_room(pc, Path::new("/cg"), &read), Some(805306368 - 60000000));
        // No limit (v1's ~2^63) is none.
        let read = files(&[("/cg/memory/k5/memory.limit_in_bytes", "9223372036854771712\n")]);
        assert_eq!(cgroup_room(pc, Path::new("/cg"), &read), None);
        // A parent's limit (the group's own is none): memory.stat says it.
        let read = files(&[
            ("/cg/memory/k5/memory.limit_in_bytes", "9223372036854771712\n"),
            ("/cg/memory/k5/memory.stat", "hierarchical_memory_limit 536870912\ntotal_rss 0\n"),
        ]);
        assert_eq!(cgroup_room(pc, Path::new("/cg"), &read), Some(512 << 20));
        // The root group of a container.
        let read = files(&[("/cg/memory/memory.limit_in_bytes", "1073741824\n")]);
        assert_eq!(cgroup_room("4:memory:/\n", Path::new("/cg"), &read), Some(1 << 30));
    }

    #[test]
    fn a_v2_memory_max_less_its_anonymous_memory() {
        let read =
            files(&[("/cg/ci/job/memory.max", "805306368\n"), ("/cg/ci/job/memory.stat", "anon 10000000\nfile 5\n")]);
        assert_eq!(cgroup_room("0::/ci/job\n", Path::new("/cg"), &read), Some(805306368 - 10000000));
        let read = files(&[("/cg/ci/job/memory.max", "max\n")]);
        assert_eq!(cgroup_room("0::/ci/job\n", Path::new("/cg"), &read), None);
        // A parent's memory.max applies to the group too.
        let read = files(&[("/cg/ci/job/memory.max", "max\n"), ("/cg/ci/memory.max", "268435456\n")]);
        assert_eq!(cgroup_room("0::/ci/job\n", Path::new("/cg"), &read), Some(256 << 20));
        assert_eq!(cgroup_room("garbage", Path::new("/cg"), &read), None);
    }
}
