//! Reading one cgroup's resource usage from cgroupfs, cgroup v1 controllers first (hybrid
//! hosts keep the data there) and the unified v2 hierarchy otherwise, the way cAdvisor's
//! libcontainer handler does; parsing is pure and the file access sits behind [`CgroupFiles`].

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// USER_HZ: the unit of `cpuacct.stat` (clock ticks), 100 on every Linux ABI.
const USER_HZ: f64 = 100.0;
/// cgroup v1 writes this (or more) for "no memory limit": the largest page-aligned i64.
const V1_UNLIMITED: u64 = 1 << 62;

/// File access to the cgroup hierarchies; the host's or a fake in unit tests.
pub trait CgroupFiles: Send + Sync {
    /// The file's contents; `None` when it does not exist or cannot be read.
    fn read(&self, path: &Path) -> Option<String>;
    /// The names of the directories in `path` (empty when it does not exist).
    fn subdirs(&self, path: &Path) -> Vec<String>;
    /// The directory's inode number: its cgroup id on cgroup v2.
    fn inode(&self, path: &Path) -> Option<u64>;
}

/// The host's cgroupfs.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostCgroupFiles;

impl CgroupFiles for HostCgroupFiles {
    fn read(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    fn subdirs(&self, path: &Path) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(path) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }

    fn inode(&self, path: &Path) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| m.ino())
    }
}

/// Where the hierarchies are mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupLayout {
    /// The directory holding the v1 controller mounts (`/sys/fs/cgroup`), if any.
    pub v1: Option<PathBuf>,
    /// The cgroup v2 mount (`/sys/fs/cgroup/unified` on hybrid hosts, else `/sys/fs/cgroup`).
    pub unified: PathBuf,
}

impl CgroupLayout {
    /// The layout under `mount` (`/sys/fs/cgroup`): pure v2 when `mount` itself is cgroup2
    /// (it has `cgroup.controllers`), else v1 controllers with v2 at `mount/unified`.
    pub fn detect(files: &dyn CgroupFiles, mount: &Path) -> Self {
        if files.read(&mount.join("cgroup.controllers")).is_some() {
            Self {
                v1: None,
                unified: mount.to_path_buf(),
            }
        } else {
            Self {
                v1: Some(mount.to_path_buf()),
                unified: mount.join("unified"),
            }
        }
    }

    /// The v2 directory of the cgroup at `relative` (e.g. `/skiff/kubepods/pod<uid>`).
    pub fn unified_dir(&self, relative: &str) -> PathBuf {
        self.unified.join(relative.trim_start_matches('/'))
    }

    /// The v1 directory of `relative` for one of `controllers` (mount names to try, e.g.
    /// `cpuacct` then `cpu,cpuacct`).
    fn v1_dirs<'a>(
        &'a self,
        controllers: &'a [&'a str],
        relative: &'a str,
    ) -> impl Iterator<Item = PathBuf> + 'a {
        self.v1.iter().flat_map(move |root| {
            controllers
                .iter()
                .map(move |c| root.join(c).join(relative.trim_start_matches('/')))
        })
    }
}

/// CPU time and CFS throttling.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuStats {
    pub usage_seconds: f64,
    pub user_seconds: f64,
    pub system_seconds: f64,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_seconds: f64,
}

/// Memory use, in bytes, and how often the limit was hit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub usage: u64,
    /// Usage minus inactive file pages (what the OOM killer and kubelet's eviction look at).
    pub working_set: u64,
    /// Anonymous memory.
    pub rss: u64,
    /// Page cache.
    pub cache: u64,
    /// v1 `memory.failcnt`; v2 `memory.events` `max`.
    pub failcnt: u64,
    /// Processes the OOM killer killed in the cgroup.
    pub oom_kills: u64,
}

/// Block IO of one device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

/// Limits the cgroup is configured with (cAdvisor's `container_spec_*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecStats {
    /// None: no limit.
    pub memory_limit: Option<u64>,
    /// CFS quota in microseconds per period; none: no limit.
    pub cpu_quota: Option<u64>,
    pub cpu_period: Option<u64>,
    /// cpu.shares (v1) or the shares matching cpu.weight (v2).
    pub cpu_shares: Option<u64>,
}

/// Everything read from one cgroup; a part is `None` when its files are missing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CgroupStats {
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
    /// Tasks (threads) in the cgroup: `pids.current`.
    pub threads: Option<u64>,
    pub threads_max: Option<u64>,
    /// Processes: lines of `cgroup.procs`.
    pub processes: Option<u64>,
    /// Block IO by device (`major:minor`).
    pub io: BTreeMap<String, IoStats>,
    pub spec: SpecStats,
}

/// `key value` lines (cpu.stat, memory.stat, memory.events, cpuacct.stat) as a map.
pub fn flat_keyed(text: &str) -> BTreeMap<&str, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key, value.trim().parse().ok()?))
        })
        .collect()
}

/// A file holding one number (`max` is none).
fn single(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// v2 `io.stat`: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` per device.
pub fn parse_io_stat(text: &str) -> BTreeMap<String, IoStats> {
    let mut devices = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(device) = fields.next() else {
            continue;
        };
        let mut io = IoStats::default();
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            let value = value.parse().unwrap_or(0);
            match key {
                "rbytes" => io.read_bytes = value,
                "wbytes" => io.write_bytes = value,
                "rios" => io.reads = value,
                "wios" => io.writes = value,
                _ => {}
            }
        }
        devices.insert(device.to_string(), io);
    }
    devices
}

/// v1 `blkio.throttle.io_service_bytes_recursive` (`bytes`) or `..._io_serviced_recursive`
/// (ops): `8:0 Read 1234` lines, added into `devices`.
pub fn parse_blkio(text: &str, bytes: bool, devices: &mut BTreeMap<String, IoStats>) {
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(device), Some(op), Some(value)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        let io = devices.entry(device.to_string()).or_default();
        match (op, bytes) {
            ("Read", true) => io.read_bytes = value,
            ("Write", true) => io.write_bytes = value,
            ("Read", false) => io.reads = value,
            ("Write", false) => io.writes = value,
            _ => {}
        }
    }
}

/// cpu.weight (v2, 1..=10000) back to cpu.shares, inverting runc's conversion.
fn weight_to_shares(weight: u64) -> u64 {
    (weight.saturating_sub(1) * 262_142 / 9999) + 2
}

/// The v1 reader (the file in the first hierarchy of the named controllers that has it)
/// and the v2 reader of the cgroup at `relative`, as the `read_*` helpers take them.
type V1File<'a> = &'a dyn Fn(&[&str], &str) -> Option<String>;
type V2File<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Calls `read` with the readers of the cgroup at `relative`'s files.
fn with_readers<T>(
    files: &dyn CgroupFiles,
    layout: &CgroupLayout,
    relative: &str,
    read: impl FnOnce(V1File<'_>, V2File<'_>) -> T,
) -> T {
    let v2 = layout.unified_dir(relative);
    let v1_file = |controllers: &[&str], file: &str| {
        layout
            .v1_dirs(controllers, relative)
            .find_map(|dir| files.read(&dir.join(file)))
    };
    let v2_file = |file: &str| files.read(&v2.join(file));
    read(&v1_file, &v2_file)
}

/// Reads only the memory of the cgroup at `relative`: for callers that need nothing else
/// (the eviction manager), without the CPU, pids, IO and limit files of [`read_stats`].
pub fn read_memory_stats(
    files: &dyn CgroupFiles,
    layout: &CgroupLayout,
    relative: &str,
) -> Option<MemoryStats> {
    with_readers(files, layout, relative, read_memory)
}

/// Reads the cgroup at `relative` (relative to each hierarchy's root).
pub fn read_stats(files: &dyn CgroupFiles, layout: &CgroupLayout, relative: &str) -> CgroupStats {
    with_readers(files, layout, relative, |v1_file, v2_file| {
        let mut stats = CgroupStats {
            cpu: read_cpu(v1_file, v2_file),
            memory: read_memory(v1_file, v2_file),
            ..CgroupStats::default()
        };
        stats.threads = v1_file(&["pids"], "pids.current")
            .or_else(|| v2_file("pids.current"))
            .and_then(|t| single(&t));
        stats.threads_max = v1_file(&["pids"], "pids.max")
            .or_else(|| v2_file("pids.max"))
            .and_then(|t| single(&t));
        stats.processes = v2_file("cgroup.procs")
            .or_else(|| v1_file(&["pids", "cpu", "memory"], "cgroup.procs"))
            .map(|t| t.lines().filter(|l| !l.is_empty()).count() as u64);
        if let Some(bytes) = v1_file(&["blkio"], "blkio.throttle.io_service_bytes_recursive") {
            parse_blkio(&bytes, true, &mut stats.io);
            if let Some(ops) = v1_file(&["blkio"], "blkio.throttle.io_serviced_recursive") {
                parse_blkio(&ops, false, &mut stats.io);
            }
        } else if let Some(text) = v2_file("io.stat") {
            stats.io = parse_io_stat(&text);
        }
        stats.spec = read_spec(v1_file, v2_file);
        stats
    })
}

/// The smallest memory limit set on the cgroup at `relative` or any of its ancestors below
/// the root: how much memory a node living in that subtree has at most.
pub fn subtree_memory_limit(
    files: &dyn CgroupFiles,
    layout: &CgroupLayout,
    relative: &str,
) -> Option<u64> {
    let mut path = String::new();
    let mut smallest: Option<u64> = None;
    for part in relative.split('/').filter(|p| !p.is_empty()) {
        path.push('/');
        path.push_str(part);
        if let Some(limit) = read_stats(files, layout, &path).spec.memory_limit {
            smallest = Some(smallest.map_or(limit, |s| s.min(limit)));
        }
    }
    smallest
}

fn read_cpu(
    v1_file: &dyn Fn(&[&str], &str) -> Option<String>,
    v2_file: &dyn Fn(&str) -> Option<String>,
) -> Option<CpuStats> {
    if let Some(usage) = v1_file(&["cpuacct", "cpu,cpuacct"], "cpuacct.usage") {
        let ticks = v1_file(&["cpuacct", "cpu,cpuacct"], "cpuacct.stat").unwrap_or_default();
        let ticks = flat_keyed(&ticks);
        let cfs = v1_file(&["cpu", "cpu,cpuacct"], "cpu.stat").unwrap_or_default();
        let cfs = flat_keyed(&cfs);
        return Some(CpuStats {
            usage_seconds: single(&usage).unwrap_or(0) as f64 / 1e9,
            user_seconds: ticks.get("user").copied().unwrap_or(0) as f64 / USER_HZ,
            system_seconds: ticks.get("system").copied().unwrap_or(0) as f64 / USER_HZ,
            periods: cfs.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: cfs.get("nr_throttled").copied().unwrap_or(0),
            throttled_seconds: cfs.get("throttled_time").copied().unwrap_or(0) as f64 / 1e9,
        });
    }
    // v2's cpu.stat has usage, user and system even without the cpu controller enabled.
    let text = v2_file("cpu.stat")?;
    let stat = flat_keyed(&text);
    let micros = |key: &str| stat.get(key).copied().unwrap_or(0) as f64 / 1e6;
    Some(CpuStats {
        usage_seconds: micros("usage_usec"),
        user_seconds: micros("user_usec"),
        system_seconds: micros("system_usec"),
        periods: stat.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: stat.get("nr_throttled").copied().unwrap_or(0),
        throttled_seconds: micros("throttled_usec"),
    })
}

fn read_memory(
    v1_file: &dyn Fn(&[&str], &str) -> Option<String>,
    v2_file: &dyn Fn(&str) -> Option<String>,
) -> Option<MemoryStats> {
    if let Some(usage) = v1_file(&["memory"], "memory.usage_in_bytes") {
        let usage = single(&usage).unwrap_or(0);
        let text = v1_file(&["memory"], "memory.stat").unwrap_or_default();
        let stat = flat_keyed(&text);
        // The hierarchical totals, as cAdvisor reports them.
        let get = |key: &str| stat.get(key).copied().unwrap_or(0);
        let oom = v1_file(&["memory"], "memory.oom_control").unwrap_or_default();
        return Some(MemoryStats {
            usage,
            working_set: usage.saturating_sub(get("total_inactive_file")),
            rss: get("total_rss"),
            cache: get("total_cache"),
            failcnt: v1_file(&["memory"], "memory.failcnt")
                .and_then(|t| single(&t))
                .unwrap_or(0),
            oom_kills: flat_keyed(&oom).get("oom_kill").copied().unwrap_or(0),
        });
    }
    let usage = single(&v2_file("memory.current")?).unwrap_or(0);
    let text = v2_file("memory.stat").unwrap_or_default();
    let stat = flat_keyed(&text);
    let get = |key: &str| stat.get(key).copied().unwrap_or(0);
    let events = v2_file("memory.events").unwrap_or_default();
    let events = flat_keyed(&events);
    Some(MemoryStats {
        usage,
        working_set: usage.saturating_sub(get("inactive_file")),
        rss: get("anon"),
        cache: get("file"),
        failcnt: events.get("max").copied().unwrap_or(0),
        oom_kills: events.get("oom_kill").copied().unwrap_or(0),
    })
}

fn read_spec(
    v1_file: &dyn Fn(&[&str], &str) -> Option<String>,
    v2_file: &dyn Fn(&str) -> Option<String>,
) -> SpecStats {
    let mut spec = SpecStats::default();
    if let Some(limit) = v1_file(&["memory"], "memory.limit_in_bytes") {
        spec.memory_limit = single(&limit).filter(|&l| l < V1_UNLIMITED);
    } else if let Some(max) = v2_file("memory.max") {
        spec.memory_limit = single(&max);
    }
    if let Some(quota) = v1_file(&["cpu", "cpu,cpuacct"], "cpu.cfs_quota_us") {
        // -1 (no limit) does not parse as u64.
        spec.cpu_quota = single(&quota);
        spec.cpu_period =
            v1_file(&["cpu", "cpu,cpuacct"], "cpu.cfs_period_us").and_then(|t| single(&t));
        spec.cpu_shares = v1_file(&["cpu", "cpu,cpuacct"], "cpu.shares").and_then(|t| single(&t));
    } else if let Some(max) = v2_file("cpu.max") {
        let mut fields = max.split_whitespace();
        spec.cpu_quota = fields.next().and_then(single);
        spec.cpu_period = fields.next().and_then(single);
        spec.cpu_shares = v2_file("cpu.weight")
            .and_then(|t| single(&t))
            .map(weight_to_shares);
    }
    spec
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{
        collections::HashMap,
        path::{Path, PathBuf},
    };

    use super::*;

    /// An in-memory cgroupfs: files by path, directories implied by them, inodes by path.
    #[derive(Debug, Default)]
    pub struct FakeFiles {
        pub files: HashMap<PathBuf, String>,
        pub inodes: HashMap<PathBuf, u64>,
    }

    impl FakeFiles {
        pub fn put(&mut self, path: &str, text: &str) {
            self.files.insert(PathBuf::from(path), text.to_string());
        }
    }

    impl CgroupFiles for FakeFiles {
        fn read(&self, path: &Path) -> Option<String> {
            self.files.get(path).cloned()
        }
        fn subdirs(&self, path: &Path) -> Vec<String> {
            let mut names: Vec<String> = self
                .files
                .keys()
                .filter_map(|f| f.strip_prefix(path).ok())
                .filter(|rest| rest.components().count() > 1)
                .filter_map(|rest| rest.components().next())
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names.dedup();
            names
        }
        fn inode(&self, path: &Path) -> Option<u64> {
            self.inodes.get(path).copied()
        }
    }

    fn hybrid() -> CgroupLayout {
        CgroupLayout {
            v1: Some("/cg".into()),
            unified: "/cg/unified".into(),
        }
    }

    #[test]
    fn v1_files_give_cadvisor_units() {
        let mut fs = FakeFiles::default();
        let dir = "node/kubepods/podu/c1";
        fs.put(&format!("/cg/cpuacct/{dir}/cpuacct.usage"), "2500000000\n");
        fs.put(
            &format!("/cg/cpuacct/{dir}/cpuacct.stat"),
            "user 150\nsystem 50\n",
        );
        fs.put(
            &format!("/cg/cpu/{dir}/cpu.stat"),
            "nr_periods 10\nnr_throttled 3\nthrottled_time 40000000\n",
        );
        fs.put(&format!("/cg/cpu/{dir}/cpu.cfs_quota_us"), "50000\n");
        fs.put(&format!("/cg/cpu/{dir}/cpu.cfs_period_us"), "100000\n");
        fs.put(&format!("/cg/cpu/{dir}/cpu.shares"), "512\n");
        fs.put(
            &format!("/cg/memory/{dir}/memory.usage_in_bytes"),
            "10000\n",
        );
        fs.put(
            &format!("/cg/memory/{dir}/memory.stat"),
            "cache 1\nrss 2\ntotal_cache 3000\ntotal_rss 6000\ntotal_inactive_file 1000\n",
        );
        fs.put(&format!("/cg/memory/{dir}/memory.failcnt"), "4\n");
        fs.put(
            &format!("/cg/memory/{dir}/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        fs.put(
            &format!("/cg/memory/{dir}/memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        fs.put(&format!("/cg/pids/{dir}/pids.current"), "7\n");
        fs.put(&format!("/cg/pids/{dir}/pids.max"), "max\n");
        fs.put(&format!("/cg/unified/{dir}/cgroup.procs"), "10\n11\n");
        fs.put(
            &format!("/cg/blkio/{dir}/blkio.throttle.io_service_bytes_recursive"),
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\nTotal 12288\n",
        );
        fs.put(
            &format!("/cg/blkio/{dir}/blkio.throttle.io_serviced_recursive"),
            "8:0 Read 1\n8:0 Write 2\n8:0 Total 3\nTotal 3\n",
        );
        let stats = read_stats(&fs, &hybrid(), &format!("/{dir}"));
        assert_eq!(
            stats.cpu,
            Some(CpuStats {
                usage_seconds: 2.5,
                user_seconds: 1.5,
                system_seconds: 0.5,
                periods: 10,
                throttled_periods: 3,
                throttled_seconds: 0.04,
            })
        );
        assert_eq!(
            stats.memory,
            Some(MemoryStats {
                usage: 10000,
                working_set: 9000,
                rss: 6000,
                cache: 3000,
                failcnt: 4,
                oom_kills: 2,
            })
        );
        assert_eq!((stats.threads, stats.threads_max), (Some(7), None));
        assert_eq!(stats.processes, Some(2));
        assert_eq!(
            stats.io.get("8:0"),
            Some(&IoStats {
                read_bytes: 4096,
                write_bytes: 8192,
                reads: 1,
                writes: 2
            })
        );
        assert_eq!(
            stats.spec,
            SpecStats {
                memory_limit: None,
                cpu_quota: Some(50000),
                cpu_period: Some(100000),
                cpu_shares: Some(512),
            }
        );
    }

    #[test]
    fn v2_files_are_read_when_no_v1_controller_has_the_cgroup() {
        let mut fs = FakeFiles::default();
        let dir = "/cg/node/pod";
        fs.put("/cg/cgroup.controllers", "cpu memory pids io\n");
        fs.put(
            &format!("{dir}/cpu.stat"),
            "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\n\
             nr_periods 5\nnr_throttled 1\nthrottled_usec 250000\n",
        );
        fs.put(&format!("{dir}/cpu.max"), "max 100000\n");
        fs.put(&format!("{dir}/cpu.weight"), "100\n");
        fs.put(&format!("{dir}/memory.current"), "5000\n");
        fs.put(
            &format!("{dir}/memory.stat"),
            "anon 3000\nfile 1500\ninactive_file 500\n",
        );
        fs.put(
            &format!("{dir}/memory.events"),
            "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n",
        );
        fs.put(&format!("{dir}/memory.max"), "1048576\n");
        fs.put(&format!("{dir}/pids.current"), "3\n");
        fs.put(&format!("{dir}/pids.max"), "4096\n");
        fs.put(
            &format!("{dir}/io.stat"),
            "8:16 rbytes=100 wbytes=200 rios=3 wios=4 dbytes=0 dios=0\n",
        );
        let layout = CgroupLayout::detect(&fs, Path::new("/cg"));
        assert_eq!(layout.v1, None);
        let stats = read_stats(&fs, &layout, "/node/pod");
        let cpu = stats.cpu.unwrap();
        assert_eq!(
            (cpu.usage_seconds, cpu.user_seconds, cpu.system_seconds),
            (3.0, 2.0, 1.0)
        );
        assert_eq!((cpu.periods, cpu.throttled_periods), (5, 1));
        assert_eq!(cpu.throttled_seconds, 0.25);
        assert_eq!(
            stats.memory,
            Some(MemoryStats {
                usage: 5000,
                working_set: 4500,
                rss: 3000,
                cache: 1500,
                failcnt: 9,
                oom_kills: 1,
            })
        );
        assert_eq!((stats.threads, stats.threads_max), (Some(3), Some(4096)));
        assert_eq!(stats.io["8:16"].write_bytes, 200);
        assert_eq!(
            stats.spec,
            SpecStats {
                memory_limit: Some(1048576),
                cpu_quota: None,
                cpu_period: Some(100000),
                cpu_shares: Some(weight_to_shares(100)),
            }
        );
    }

    #[test]
    fn the_subtree_limit_is_the_smallest_on_the_way_down() {
        let mut files = FakeFiles::default();
        files.put("/cg/memory/skiff/memory.limit_in_bytes", "1073741824");
        files.put("/cg/memory/skiff/node-1/memory.limit_in_bytes", "629145600");
        files.put(
            "/cg/memory/skiff/node-2/memory.limit_in_bytes",
            "9223372036854771712",
        );
        let layout = hybrid();
        assert_eq!(
            subtree_memory_limit(&files, &layout, "/skiff/node-1"),
            Some(600 << 20)
        );
        assert_eq!(
            subtree_memory_limit(&files, &layout, "/skiff/node-2"),
            Some(1 << 30)
        );
        assert_eq!(subtree_memory_limit(&files, &layout, "/elsewhere"), None);
    }

    #[test]
    fn a_missing_cgroup_reads_as_nothing() {
        let stats = read_stats(&FakeFiles::default(), &hybrid(), "/gone");
        assert_eq!(stats, CgroupStats::default());
    }

    #[test]
    fn runc_shares_survive_the_weight_round_trip() {
        // runc: weight = 1 + ((shares - 2) * 9999) / 262142.
        for shares in [2u64, 1024, 262_144] {
            let weight = 1 + ((shares - 2) * 9999) / 262_142;
            let back = weight_to_shares(weight);
            assert!(
                back.abs_diff(shares) <= 27,
                "{shares} -> {weight} -> {back}"
            );
        }
    }
}
