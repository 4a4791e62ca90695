//! Parsers for what hosts print: `/proc/stat`, `/proc/meminfo`, `/proc/loadavg`, `/proc/uptime`,
//! `df -P -k`, `docker ps -a --format json`, `docker stats --no-stream --format json`. The text is
//! hostile (a host can print anything): every parser takes what it understands and skips the rest, and
//! numbers are checked, never trusted.

use serde::{Deserialize, Serialize};

/// Aggregate CPU jiffies from `/proc/stat`'s first line: (busy, total).
pub fn cpu_times(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    if values.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest is already in user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// CPU busy percent between two `/proc/stat` readings.
pub fn cpu_percent(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let busy = after.0.checked_sub(before.0)?;
    let total = after.1.checked_sub(before.1)?;
    (total > 0).then(|| (100.0 * busy as f64 / total as f64).clamp(0.0, 100.0))
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Memory {
    pub total_kb: u64,
    pub available_kb: u64,
    pub used_percent: f64,
    pub swap_total_kb: u64,
    pub swap_used_percent: f64,
}

pub fn meminfo(text: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
    };
    let total = field("MemTotal").filter(|t| *t > 0)?;
    let available = field("MemAvailable").or_else(|| Some(field("MemFree")? + field("Cached").unwrap_or(0)))?;
    let swap_total = field("SwapTotal").unwrap_or(0);
    let swap_free = field("SwapFree").unwrap_or(swap_total);
    Some(Memory {
        total_kb: total,
        available_kb: available.min(total),
        used_percent: 100.0 * (total - available.min(total)) as f64 / total as f64,
        swap_total_kb: swap_total,
        swap_used_percent: if swap_total == 0 {
            0.0
        } else {
            100.0 * swap_total.saturating_sub(swap_free) as f64 / swap_total as f64
        },
    })
}

/// Load averages over 1, 5 and 15 minutes.
pub fn loadavg(text: &str) -> Option<[f64; 3]> {
    let v: Vec<f64> = text.split_whitespace().take(3).filter_map(|x| x.parse().ok()).collect();
    (v.len() == 3 && v.iter().all(|x| x.is_finite() && *x >= 0.0)).then(|| [v[0], v[1], v[2]])
}

/// Seconds since boot.
pub fn uptime(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok().filter(|s: &f64| s.is_finite() && *s >= 0.0)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Mount {
    pub filesystem: String,
    pub mount: String,
    pub size_kb: u64,
    pub used_kb: u64,
    pub used_percent: f64,
}

/// File systems that are not disks.
const PSEUDO: [&str; 6] = ["devtmpfs", "shm", "udev", "none", "proc", "sysfs"];
/// Where memory-backed file systems hold kernel and runtime state, not data.
const SYSTEM_MOUNTS: [&str; 3] = ["/dev", "/run", "/sys"];

/// Real file systems from `df -P -k` (POSIX format, 1024-byte blocks): pseudo ones and tmpfs under
/// /dev, /run and /sys skipped (a tmpfs /tmp that fills up is a real problem and is kept). The used
/// percentage is df's own: used / (used + available).
pub fn df(text: &str) -> Vec<Mount> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 6 {
                return None;
            }
            let (fs, mount) = (cols[0], cols[5..].join(" "));
            let (size, used, avail) =
                (cols[1].parse::<u64>().ok()?, cols[2].parse::<u64>().ok()?, cols[3].parse::<u64>().ok()?);
            let system =
                fs == "tmpfs" && SYSTEM_MOUNTS.iter().any(|m| mount == *m || mount.starts_with(&format!("{m}/")));
            if size == 0
                || PSEUDO.contains(&fs)
                || system
                || !mount.starts_with('/')
                || mount.starts_with("/mnt/sandboxing")
            {
                return None;
            }
            let denominator = (used + avail).max(1);
            Some(Mount {
                filesystem: fs.chars().take(200).collect(),
                mount: mount.chars().take(200).collect(),
                size_kb: size,
                used_kb: used,
                used_percent: (100.0 * used as f64 / denominator as f64).clamp(0.0, 100.0),
            })
        })
        .collect()
}

/// Entries in `journalctl -p err … -o short-iso` output (marker lines such as `-- Boot … --` and
/// `-- No entries --` are not entries).
pub fn journal_errors(text: &str) -> u64 {
    text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("-- ")).count() as u64
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Container {
    pub name: String,
    /// running | restarting | exited | paused | created | dead
    pub state: String,
    /// healthy | unhealthy | starting, when the image has a health check.
    pub health: Option<String>,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PsLine {
    names: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StatsLine {
    name: String,
    #[serde(rename = "CPUPerc", default)]
    cpu_perc: String,
    #[serde(default)]
    mem_perc: String,
}

fn percent(text: &str) -> Option<f64> {
    text.trim().strip_suffix('%')?.parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0)
}

/// Containers from `docker ps -a --format json` (one object per line), with CPU and memory from
/// `docker stats --no-stream --format json` when given.
pub fn containers(ps: &str, stats: &str) -> Vec<Container> {
    let stats: Vec<StatsLine> = stats.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    ps.lines()
        .filter_map(|l| serde_json::from_str::<PsLine>(l).ok())
        .map(|p| {
            let status = p.status.to_ascii_lowercase();
            let health = ["unhealthy", "healthy", "health: starting"]
                .iter()
                .find(|h| status.contains(&format!("({h})")))
                .map(|h| h.trim_start_matches("health: ").to_string());
            let s = stats.iter().find(|s| s.name == p.names);
            Container {
                name: p.names.chars().take(200).collect(),
                state: p.state.chars().take(40).collect(),
                health,
                cpu_percent: s.and_then(|s| percent(&s.cpu_perc)),
                memory_percent: s.and_then(|s| percent(&s.mem_perc)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/health/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn real_proc_files_parse() {
        let (busy, total) = cpu_times(&fixture("proc_stat.txt")).unwrap();
        assert!(busy > 0 && total > busy, "{busy} {total}");
        assert_eq!(cpu_percent((100, 1000), (150, 1100)), Some(50.0));
        assert_eq!(cpu_percent((100, 1000), (100, 1000)), None, "no time passed");
        assert_eq!(cpu_percent((200, 1000), (100, 1100)), None, "a counter that went back (reboot)");
        let m = meminfo(&fixture("proc_meminfo.txt")).unwrap();
        assert!(m.total_kb > 0 && m.used_percent > 0.0 && m.used_percent < 100.0, "{m:?}");
        let l = loadavg(&fixture("proc_loadavg.txt")).unwrap();
        assert!(l.iter().all(|v| *v >= 0.0));
        assert!(uptime(&fixture("proc_uptime.txt")).unwrap() > 0.0);
    }

    #[test]
    fn df_keeps_real_disks_with_dfs_percentage() {
        let mounts = df(&fixture("df_pk.txt"));
        let root = mounts.iter().find(|m| m.mount == "/").expect("the root file system");
        assert_eq!(root.filesystem, "/dev/vda");
        // 46984632 / (46984632 + 48301256) = 49.3 % (df rounds up to 50 %).
        assert!((root.used_percent - 49.31).abs() < 0.01, "{root:?}");
        assert!(
            mounts.iter().all(|m| !m.filesystem.contains("tmpfs")),
            "/dev/shm and cgroups are not disks: {mounts:?}"
        );
        let tmp = df("Filesystem 1024-blocks Used Available Capacity Mounted on\ntmpfs 2048 2000 48 98% /tmp\n");
        assert_eq!(tmp.len(), 1, "a tmpfs /tmp can fill up");
        let odd = "Filesystem 1024-blocks Used Available Capacity Mounted on\n\
                   /dev/sdb1 1000 900 100 90% /srv/my data\n\
                   garbage line\n/dev/sdc1 x y z 1% /x\n";
        let parsed = df(odd);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].mount, "/srv/my data", "spaces in mount points");
        assert_eq!(parsed[0].used_percent, 90.0);
    }

    #[test]
    fn containers_state_health_and_usage() {
        let c = containers(&fixture("docker_ps.jsonl"), &fixture("docker_stats.jsonl"));
        assert_eq!(c.len(), 4);
        assert_eq!((c[0].name.as_str(), c[0].health.as_deref()), ("web", Some("healthy")));
        assert_eq!(c[1].health.as_deref(), Some("unhealthy"));
        assert_eq!(c[1].cpu_percent, Some(87.4));
        assert_eq!(c[2].state, "restarting");
        assert_eq!(c[2].cpu_percent, None, "docker prints -- for a restarting container");
        assert_eq!(c[3].state, "exited");
        assert!(containers("not json\n{}", "").is_empty());
    }

    #[test]
    fn journal_error_lines_are_counted_without_markers() {
        assert_eq!(journal_errors(&fixture("journal_err.txt")), 4);
        assert_eq!(journal_errors("-- No entries --\n"), 0);
    }

    #[test]
    fn hostile_numbers_are_refused() {
        assert_eq!(loadavg("NaN 1 2"), None);
        assert_eq!(loadavg("-1 1 2"), None);
        assert_eq!(uptime("inf 3"), None);
        assert_eq!(meminfo("MemTotal: 0 kB\n"), None);
        assert_eq!(cpu_times("cpu  1 2"), None);
    }
}
