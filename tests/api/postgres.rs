//! A real PostgreSQL for tests: Debian's server binaries (`initdb`, `postgres`), a throwaway cluster in a
//! temp directory on a free loopback port, started once per test process (as the `postgres` user when
//! running as root, since the server refuses root), stopped by a watchdog when the process exits. Each
//! test gets its own database. Installed by `scripts/test-deps.sh`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sshd::free_port;

pub struct Cluster {
    pub port: u16,
    _dir: PathBuf,
    _server: std::process::Child,
    _watchdog: std::process::Child,
}

fn bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/test-deps.sh installs Debian's postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("bin").join(name).exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL server version with initdb").join("bin").join(name)
}

/// uid and gid to run the server as: ourselves, or `postgres` (else `nobody`) when we are root.
fn server_user() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    for name in ["postgres", "nobody"] {
        let out = Command::new("id").args(["-u", name]).output().ok()?;
        let gid = Command::new("id").args(["-g", name]).output().ok()?;
        if out.status.success() && gid.status.success() {
            let uid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
            let gid = String::from_utf8_lossy(&gid.stdout).trim().parse().ok()?;
            return Some((uid, gid));
        }
    }
    None
}

fn as_server_user(cmd: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = server_user() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// The test process's cluster (started on first use).
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("medic-pg-").tempdir().unwrap().keep();
        let data = dir.join("data");
        if let Some((uid, gid)) = server_user() {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let status = as_server_user(
            Command::new(bin("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "medic", "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync"])
                .stdout(Stdio::null()),
        )
        .status()
        .expect("initdb runs");
        assert!(status.success(), "initdb failed");
        let port = free_port();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        if let Some((uid, gid)) = server_user() {
            std::os::unix::fs::chown(dir.join("server.log"), Some(uid), Some(gid)).unwrap();
        }
        // fsync off: a throwaway cluster; medic's own durability is what the tests check.
        let server = as_server_user(
            Command::new(bin("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .args(["-c", "max_connections=400", "-c", "unix_socket_directories="])
                .stdout(Stdio::null())
                .stderr(log),
        )
        .spawn()
        .expect("postgres starts");
        // The server outlives nothing: a watchdog stops it when this test process exits.
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -INT {pg} 2>/dev/null; sleep 3; rm -rf {dir}",
                me = std::process::id(),
                pg = server.id(),
                dir = dir.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if medic::store::db::Connection::open_postgres(&url_for(port, "postgres")).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not start; see {}/server.log", dir.display());
            std::thread::sleep(Duration::from_millis(100));
        }
        Cluster { port, _dir: dir, _server: server, _watchdog: watchdog }
    })
}

fn url_for(port: u16, db: &str) -> String {
    format!("postgres://medic@127.0.0.1:{port}/{db}")
}

/// A new, empty database on the test cluster; its URL.
pub fn database() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let c = cluster();
    let name = format!("medic_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    let admin = medic::store::db::Connection::open_postgres(&url_for(c.port, "postgres")).unwrap();
    admin.execute_batch(&format!("CREATE DATABASE {name}")).unwrap();
    url_for(c.port, &name)
}

/// True when this run's store tests go to PostgreSQL (`MEDIC_TEST_STORE=postgres`).
pub fn selected() -> bool {
    std::env::var("MEDIC_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// The database of the test whose data directory is `dir` (the same one again after a restart).
pub fn database_for(dir: &std::path::Path) -> String {
    static BY_DIR: OnceLock<std::sync::Mutex<std::collections::HashMap<PathBuf, String>>> = OnceLock::new();
    let map = BY_DIR.get_or_init(Default::default);
    let mut map = map.lock().unwrap();
    map.entry(dir.to_path_buf()).or_insert_with(database).clone()
}
