//! Real components for tests: Debian's `sshd` on 127.0.0.1 with throwaway keys, and Debian's `nginx` on a
//! loopback port with its own config and a control script. Installed by `scripts/test-deps.sh`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use medic::inventory::{HostConfig, KnownHostsPolicy, TransportKind};
use tempfile::TempDir;

/// A free port for a server a test starts later (sshd, nginx, chromedriver), chosen *below* the kernel's
/// ephemeral range (32768–60999 by default): a port picked by `bind(0)` and released could be taken by
/// any client socket before the server binds it (a test that opens hundreds of connections made that
/// happen); ports below the range are never handed out to client sockets.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Spread concurrent callers over the range; each process starts at a different place.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % 10_000) as u16;
    for _ in 0..20_000 {
        let port = 20_000 + (start + NEXT.fetch_add(7, Ordering::SeqCst)) % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "medic-test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen is installed (openssh-client)");
    assert!(status.success());
}

pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A real sshd on 127.0.0.1, killed on drop.
pub struct TestSshd {
    pub port: u16,
    pub dir: TempDir,
    child: Child,
}

impl TestSshd {
    pub fn start() -> Self {
        Self::start_with_env("")
    }

    /// Like [`TestSshd::start`], with more `NAME=value` pairs in the sessions' environment.
    pub fn start_with_env(env: &str) -> Self {
        // A short path: the ssh control socket lives under transport.control_dir, not here, but keys and
        // config paths end up in command lines and logs.
        let dir = tempfile::Builder::new().prefix("msh").tempdir_in("/tmp").unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        if current_user() == "root" {
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let port = free_port();
        // `SetEnv SHLVL=1`: bash sources ~/.bashrc for commands started by sshd only in a top-level shell.
        // Tests log in as whoever runs them (often root), and this root's .bashrc runs `pyenv init`, whose
        // rehash races between concurrent sessions and prints "cannot rehash" into the evidence now and
        // then. medic's own ssh user should have a quiet shell (README); the test host gets one this way.
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nLogLevel ERROR\nMaxSessions 10\nSetEnv SHLVL=1 {env}\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd is installed (openssh-server)");
        wait_for_port(port, "sshd");
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        std::fs::write(d.join("known_hosts"), format!("[127.0.0.1]:{port} {}\n", key.join(" "))).unwrap();
        Self { port, dir, child }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An inventory host that reaches this sshd with strict host key checking.
    pub fn host(&self, name: &str) -> HostConfig {
        HostConfig {
            name: name.into(),
            transport: TransportKind::Ssh,
            address: "127.0.0.1".into(),
            port: self.port,
            user: current_user(),
            identity_file: Some(self.path("client_key")),
            known_hosts: KnownHostsPolicy::Strict,
            known_hosts_file: Some(self.path("known_hosts")),
            services: vec!["nginx".into()],
            log_sources: vec![],
            remote_timeout: true,
        }
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real nginx on a loopback port, controlled by `<dir>/bin/test-nginx start|stop|restart|status|noop`.
pub struct TestNginx {
    pub port: u16,
    pub dir: TempDir,
}

impl TestNginx {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("mng").tempdir_in("/tmp").unwrap();
        let d = dir.path().display().to_string();
        let port = free_port();
        for sub in ["bin", "tmp", "logs"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let conf = format!(
            "daemon on;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
               fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
               server {{\n    listen 127.0.0.1:{port};\n    location /health {{ return 200 \"ok\\n\"; }}\n    \
                 location /slow {{ limit_rate 100; return 200 \"{slow_body}\"; }}\n  }}\n}}\n",
            slow_body = "x".repeat(300)
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let script = format!(
            "#!/bin/sh\n# Test control script for the test nginx (start, stop, restart, status, noop).\nset -eu\ncase \"$1\" in\n\
             start) exec /usr/sbin/nginx -e {d}/logs/error.log -c {d}/nginx.conf -p {d} ;;\n\
             stop) if [ -f {d}/nginx.pid ]; then kill \"$(cat {d}/nginx.pid)\"; fi\n\
                   i=0; while [ -f {d}/nginx.pid ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done ;;\n\
             noop) echo 'did nothing' ;;\n\
             restart) \"$0\" stop; exec \"$0\" start ;;\n\
             status) if [ -f {d}/nginx.pid ] && kill -0 \"$(cat {d}/nginx.pid)\" 2>/dev/null; then \
                     echo \"nginx is running (pid $(cat {d}/nginx.pid))\"; else echo 'nginx is not running'; exit 3; fi ;;\n\
             *) echo \"usage: $0 start|stop|restart|status|noop\" >&2; exit 2 ;;\nesac\n"
        );
        let path = dir.path().join("bin/test-nginx");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { port, dir }
    }

    pub fn control(&self) -> String {
        self.dir.path().join("bin/test-nginx").display().to_string()
    }

    pub fn start(&self) {
        let out = Command::new(self.control()).arg("start").output().unwrap();
        let log = std::fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "nginx starts on port {}: {}{}\nerror.log:\n{log}",
            self.port,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        wait_for_port(self.port, "nginx");
    }

    pub fn stop(&self) {
        let _ = Command::new(self.control()).arg("stop").status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "nginx stops");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn health_url(&self) -> String {
        format!("http://127.0.0.1:{}/health", self.port)
    }

    pub fn is_up(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }
}

impl Drop for TestNginx {
    fn drop(&mut self) {
        self.stop();
    }
}
