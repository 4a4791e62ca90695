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

/// A new data directory (initdb) in a temp directory owned by the server's user; returns the directory.
fn init() -> PathBuf {
    let dir = tempfile::Builder::new().prefix("medic-pg-").tempdir().unwrap().keep();
    if let Some((uid, gid)) = server_user() {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    }
    let status = as_server_user(
        Command::new(bin("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "medic", "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null()),
    )
    .status()
    .expect("initdb runs");
    assert!(status.success(), "initdb failed");
    dir
}

/// Starts the server of `dir` on `port` and waits until it answers; a watchdog stops it (and removes
/// `dir`) when this test process exits.
fn serve(dir: &std::path::Path, port: u16, extra: &[String]) -> (std::process::Child, std::process::Child) {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log")).unwrap();
    if let Some((uid, gid)) = server_user() {
        std::os::unix::fs::chown(dir.join("server.log"), Some(uid), Some(gid)).unwrap();
    }
    // fsync off: a throwaway cluster; medic's own durability is what the tests check.
    let server = as_server_user(
        Command::new(bin("postgres"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "max_connections=400", "-c", "unix_socket_directories="])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log),
    )
    .spawn()
    .expect("postgres starts");
    let watchdog = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {me} 2>/dev/null && kill -0 {pg} 2>/dev/null; do sleep 1; done; \
             if ! kill -0 {me} 2>/dev/null; then kill -INT {pg} 2>/dev/null; sleep 3; rm -rf {dir}; fi",
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
    while medic::store::db::Connection::open_postgres(&url_for(port, "postgres")).is_err() {
        assert!(Instant::now() < deadline, "PostgreSQL did not start; see {}/server.log", dir.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, watchdog)
}

/// The test process's cluster (started on first use).
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let dir = init();
        let port = free_port();
        let (server, watchdog) = serve(&dir, port, &[]);
        Cluster { port, _dir: dir, _server: server, _watchdog: watchdog }
    })
}

/// A cluster of one test's own, which the test can stop and start again (a database restart).
pub struct OwnCluster {
    pub port: u16,
    pub dir: PathBuf,
    extra: Vec<String>,
    server: Option<(std::process::Child, std::process::Child)>,
}

impl OwnCluster {
    pub fn start() -> Self {
        Self::start_with(|_| Vec::new())
    }

    /// Starts with extra server settings, given the data directory's parent (for files they name).
    pub fn start_with(settings: impl FnOnce(&std::path::Path) -> Vec<String>) -> Self {
        let dir = init();
        let extra = settings(&dir);
        if let Some((uid, gid)) = server_user() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                std::os::unix::fs::chown(entry.path(), Some(uid), Some(gid)).unwrap();
            }
        }
        let port = free_port();
        let server = Some(serve(&dir, port, &extra));
        Self { port, dir, extra, server }
    }

    pub fn url(&self) -> String {
        url_for(self.port, "postgres")
    }

    /// Stops the server (fast shutdown: clients are disconnected) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some((mut server, mut watchdog)) = self.server.take() {
            let _ = Command::new("kill").args(["-INT", &server.id().to_string()]).status();
            let _ = server.wait();
            let _ = watchdog.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.server = Some(serve(&self.dir, self.port, &self.extra));
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
