//! The HTTP edge under hostile clients: slow headers, slow bodies, more stalled connections than the
//! file limit allows, and a shutdown that does not wait for any of them.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TOKEN, TestApp, kuma};
use crate::process::{MedicProcess, write_config};

/// Reads until the server closes or answers; returns what came back and how long it took.
async fn read_all(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(within.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), started.elapsed())
}

#[tokio::test]
async fn a_client_trickling_headers_is_cut_off_and_a_trickling_body_gets_408() {
    let app = TestApp::spawn_with(|s| {
        s.server.header_timeout = Duration::from_secs(1);
        s.server.request_timeout = Duration::from_secs(2);
    })
    .await;
    // Slowloris: a header byte every 300 ms, never finishing.
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"POST /hooks/uptime-kuma HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..40 {
            if slow.write_all(b"X").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        false
    });
    let cut = tokio::time::timeout(Duration::from_secs(10), trickle).await.expect("the server cut it off").unwrap();
    assert!(cut, "the trickling client was disconnected");

    // A body at a byte every 300 ms: 408 once request_timeout passes.
    let mut body_client = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /hooks/uptime-kuma HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n"
    );
    body_client.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = body_client.into_split();
    tokio::spawn(async move {
        for _ in 0..200 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    // Meanwhile and after, ordinary requests are answered.
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_stalled_connections_than_the_file_limit_do_not_take_webhooks_down() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let text = std::fs::read_to_string(&config).unwrap().replace("[server]\n", "[server]\nheader_timeout = \"4s\"\n");
    std::fs::write(&config, text).unwrap();
    // This test process opens 400 sockets while other tests run: give it room (its soft limit up to
    // the hard one), so only medic is short of descriptors.
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write a struct this function owns.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < 4096 {
            limit.rlim_cur = limit.rlim_max.min(4096);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    let mut medic = MedicProcess::start_after(&config, "ulimit -n 256").await;
    let addr = medic.addr;
    // 400 connections that send nothing: more than the 256 descriptors medic may open.
    let mut stalled = Vec::new();
    for _ in 0..400 {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await {
            stalled.push(s);
        }
    }
    assert!(stalled.len() >= 300, "{} connections opened", stalled.len());
    // Every request gets an answer at once (202, or 503 with Retry-After while the stalled ones hold the
    // cap), and within a few seconds the stalled ones are cut and webhooks are accepted again.
    let body = std::fs::read_to_string(kuma("down_json.json")).unwrap();
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(3)).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut busy, mut closed, mut accepted, mut healthy) = (0, 0, 0, false);
    while Instant::now() < deadline && (accepted == 0 || !healthy) {
        let r = client
            .post(format!("http://{addr}/hooks/uptime-kuma"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 202 => accepted += 1,
            Ok(r) if r.status() == 503 => {
                assert_eq!(r.headers()["retry-after"], "1");
                busy += 1;
            }
            Ok(r) => panic!("unexpected {}", r.status()),
            // Turned away at once when even the 503 answers are many: a closed connection, not a hang.
            Err(e) => {
                assert!(!e.is_timeout(), "a request hung: {e}");
                closed += 1;
            }
        }
        healthy = client.get(format!("http://{addr}/healthz")).send().await.is_ok_and(|r| r.status() == 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(busy + closed > 0, "the cap turned requests away while the stalled connections held it");
    assert!(accepted > 0 && healthy, "webhooks and /healthz came back ({busy} busy, {closed} closed first)");
    drop(stalled);
    medic.child.kill().await.unwrap();
}

#[tokio::test]
async fn sigterm_stops_within_the_grace_period_whatever_a_client_does() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[server]\n",
        "[server]\nshutdown_grace = \"2s\"\nheader_timeout = \"60s\"\nrequest_timeout = \"60s\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let mut medic = MedicProcess::start(&config).await;
    // A request whose body never finishes.
    let mut client = TcpStream::connect(medic.addr).await.unwrap();
    let head = format!(
        "POST /hooks/uptime-kuma HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n{{"
    );
    client.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = medic.child.id().unwrap().to_string();
    let started = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(15), medic.child.wait()).await.expect("medic exits").unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?} with a 2 s grace");
    let (_, _) = read_all(&mut client, Duration::from_millis(100)).await;
}

/// A tmpfs of `size` mounted on a fresh directory (root only), unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let uid = std::process::Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?
            .success();
        ok.then_some(Self { dir })
    }

    /// Writes a file until the disk is full; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let small = [0u8; 512];
        while file.write_all(&small).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn a_full_disk_answers_503_with_retry_after_and_medic_recovers_by_itself() {
    let Some(disk) = SmallDisk::mount("8m") else {
        println!("skipped: mounting a small tmpfs needs root (this run is not root)");
        return;
    };
    let data = disk.dir.path().join("data");
    let app = TestApp::spawn_with(|s| s.store.data_dir = data.clone()).await;
    let post = |i: usize| {
        let body = serde_json::json!({"heartbeat": {"status": 0, "msg": "x".repeat(200_000)},
                                      "monitor": {"id": format!("m{i}"), "name": "m"}});
        let app = &app;
        async move { app.post_kuma_json(&body).await }
    };
    assert_eq!(post(0).await.status(), 202);
    let filler = disk.fill();
    let mut refused = None;
    for i in 1..40 {
        let r = post(i).await;
        if r.status() == 503 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status(), 202, "either stored or refused");
    }
    let r = refused.expect("a full disk refuses webhooks");
    assert_eq!(r.headers()["retry-after"], "5");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("retry"), "{body}");
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 503, "not ready while full");
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200, "alive all the same");
    // Space frees: medic takes webhooks again with no restart.
    std::fs::remove_file(filler).unwrap();
    assert_eq!(post(100).await.status(), 202);
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    let listed = app.incidents("limit=500").await;
    assert!(listed.iter().any(|i| i["monitor_id"] == "m100"));
    app.stop().await;
}
