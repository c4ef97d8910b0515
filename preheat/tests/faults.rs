//! kiln-preheat when things die: the server mid-run (a mariadbd of the
//! test's own, in a temp dir, so it can be killed), or kiln-preheat itself.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kiln_testkit::klines::KlineSpec;

/// A private mariadbd. Fails loudly when MariaDB's server is not installed.
struct Server {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Server {
    fn start(dir: &Path, port: u16) -> Self {
        let data = dir.join("data");
        if !data.exists() {
            let status = Command::new("mariadb-install-db")
                .args([
                    "--no-defaults",
                    "--user=root",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ])
                .arg(format!("--datadir={}", data.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("mariadb-install-db is needed (Debian: apt-get install mariadb-server)");
            assert!(status.success());
        }
        let child = Command::new("mariadbd")
            .args([
                "--no-defaults",
                "--user=root",
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
            ])
            .args(["--innodb-buffer-pool-size=64M", "--skip-name-resolve"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
            .spawn()
            .expect("mariadbd is needed (Debian: apt-get install mariadb-server)");
        let server = Self {
            dir: dir.to_path_buf(),
            port,
            child: Some(child),
        };
        let started = Instant::now();
        loop {
            let ok = runtime().block_on(async {
                mysql_async::Conn::from_url(format!("mysql://root@127.0.0.1:{port}/mysql"))
                    .await
                    .is_ok()
            });
            if ok {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "mariadbd did not start: {}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/test", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = &self.dir;
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_server_killed_mid_run_leaves_a_valid_cache_and_the_next_run_completes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Server::start(tmp.path(), port);
    let admin = format!("mysql://root@127.0.0.1:{port}/mysql");
    exec(&admin, "CREATE DATABASE test");
    let spec = KlineSpec {
        symbols: 400,
        days: 250,
        ..KlineSpec::default()
    };
    load(&server.url(), "kline", &spec);
    let out = tmp.path().join("cache");
    // Small batches, one connection and a publish after every symbol: the
    // run is still going when the server dies.
    let run = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln-preheat"))
        .args(["--url", &server.url(), "--table", "kline", "--json", "-q"])
        .args(["--jobs", "1", "--batch-symbols", "5", "--checkpoint", "0s"])
        .args([
            "--retries",
            "2",
            "--retry-delay",
            "100ms",
            "--connect-timeout",
            "2s",
        ])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !out.join("_index.parquet").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoint published"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(3),
        "some symbols failed: {stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let failed = summary["failed"].as_array().unwrap().len();
    assert!(
        failed > 0,
        "the kill came too late to test anything: {summary}"
    );

    // What was published is whole and right.
    let expected = expected_rows(&spec);
    let partial = cache_rows(&out);
    assert!(!partial.is_empty());
    assert_eq!(partial.len() + failed, 400, "{summary}");
    for (symbol, rows) in &partial {
        assert_eq!(rows, &expected[symbol], "{symbol}");
    }
    assert_no_leftovers(&out);

    let _server = Server::start(tmp.path(), port);
    let done = run_ok(&_server.url(), "kline", &out, &[]);
    assert_eq!(
        done["fetched_full"].as_u64().unwrap() as usize,
        failed,
        "{done}"
    );
    assert_eq!(
        done["skipped_fresh"].as_u64().unwrap() as usize,
        400 - failed
    );
    assert_eq!(cache_rows(&out), expected);
}

#[test]
fn kiln_preheat_killed_mid_run_leaves_the_previous_cache() {
    let (url, table) = (url(), table("killed"));
    let spec = KlineSpec {
        symbols: 300,
        days: 200,
        ..KlineSpec::default()
    };
    load(&url, &table, &spec);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cache");
    run_ok(&url, &table, &out, &["--limit", "100"]);
    let before = cache_rows(&out);
    let mut killed = 0;
    for delay_ms in [20u64, 60, 120, 200, 300] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln-preheat"))
            .args(["--url", &url, "--table", &table, "--force-refresh", "-q"])
            .args(["--batch-symbols", "10", "--checkpoint", "1h"])
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let now = cache_rows(&out);
        assert!(
            now == before || now.len() == 300,
            "a cache that is neither before nor after"
        );
        if now.len() == 300 {
            break;
        }
    }
    assert!(killed > 0, "no run was killed mid-way");
    // The next run cleans the dead runs' staging copies and completes.
    run_ok(&url, &table, &out, &["--force-refresh"]);
    assert_no_leftovers(&out);
    assert_eq!(cache_rows(&out), expected_rows(&spec));
    exec(&url, &format!("DROP TABLE `{table}`"));
}
