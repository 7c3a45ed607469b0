//! When the session store or the database stops, protected requests get 503
//! (never a 500, never a wrong signed-in or signed-out answer), /healthz says
//! so, and the instance recovers by itself when the server is back. These
//! tests run private PostgreSQL and Redis servers so that they can stop them.

use crate::{common, support};

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::PASSWORD;
use common::process::ServerProcess;
use reqwest::{Client, StatusCode, header};
use serde_json::{Value, json};

struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
}

impl PrivateRedis {
    async fn start() -> Option<Self> {
        let mut redis = Self {
            port: support::free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        if !redis.launch().await {
            support::skip(
                "Redis outage",
                "redis-server is not installed or did not start",
            );
            return None;
        }
        Some(redis)
    }

    async fn launch(&mut self) -> bool {
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server, saving its data so that sessions survive the restart.
    async fn stop(&mut self) {
        let status = tokio::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "save"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .unwrap();
        let _ = status;
        if let Some(mut child) = self.child.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            let _ = child.kill().await;
        }
    }
}

struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    async fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|dirs| {
                dirs.filter_map(Result::ok)
                    .map(|d| d.path().join("bin"))
                    .find(|b| b.join("initdb").exists())
            });
        let Some(bin) = bin else {
            support::skip(
                "PostgreSQL outage",
                "no PostgreSQL server binaries under /usr/lib/postgresql",
            );
            return None;
        };
        let pg = Self {
            bin,
            dir: tempfile::tempdir().unwrap(),
            port: support::free_port(),
        };
        if support::is_root() {
            let ok = std::process::Command::new("chown")
                .arg("postgres:postgres")
                .arg(pg.dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot hand the data directory to the postgres user");
        }
        let data = pg.data();
        let initdb = pg
            .run(
                "initdb",
                &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
            )
            .await;
        assert!(initdb, "initdb failed");
        assert!(pg.launch().await, "private PostgreSQL did not start");
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    async fn run(&self, tool: &str, args: &[&str]) -> bool {
        let program = self.bin.join(tool);
        let mut cmd = if support::is_root() {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            tokio::process::Command::new(&program)
        };
        cmd.args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success())
    }

    async fn launch(&self) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        )
        .await
    }

    async fn stop(&self) {
        assert!(
            self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])
                .await
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let data = self.data();
        let mut cmd = if support::is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            std::process::Command::new(&program)
        };
        let _ = cmd
            .args(["-D", &data, "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

async fn get(client: &Client, server: &ServerProcess, path: &str) -> reqwest::Response {
    client
        .get(server.url(path))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap()
}

async fn login(client: &Client, server: &ServerProcess) -> StatusCode {
    client
        .post(server.url("/login"))
        .header(header::ACCEPT, "application/json")
        .json(&json!({"username": "ann", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .status()
}

/// While the store is down: 503 everywhere it matters, with a clear message,
/// once the instance has noticed (within the feed bound).
async fn assert_unavailable(client: &Client, server: &ServerProcess) {
    // The instance learns of the stop from its change feed's connection;
    // until then its cache may still answer a read.
    common::within_the_feed_bound(
        "the store's stop",
        StatusCode::OK,
        StatusCode::SERVICE_UNAVAILABLE,
        || async { get(client, server, "/profile").await.status() },
    )
    .await;
    let r = get(client, server, "/profile").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "store_unavailable");
    assert!(body["message"].as_str().unwrap().contains("unavailable"));
    assert_eq!(
        get(client, server, "/healthz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(login(client, server).await, StatusCode::SERVICE_UNAVAILABLE);
}

async fn wait_healthy(client: &Client, server: &ServerProcess) {
    for _ in 0..100 {
        if get(client, server, "/healthz").await.status() == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the instance did not recover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_gives_503_and_the_instance_recovers_by_itself() {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut env = common::base_env(&dir);
    env.push(("LATCHKEY_SESSION_STORE_URL".into(), redis.url()));
    common::add_user(&env, "ann", PASSWORD, &[]).await;
    let mut server = ServerProcess::start(dir.path(), &env).await;
    let (client, _jar) = common::client();
    assert_eq!(login(&client, &server).await, StatusCode::OK);
    assert_eq!(
        get(&client, &server, "/profile").await.status(),
        StatusCode::OK
    );

    redis.stop().await;
    assert_unavailable(&client, &server).await;

    assert!(redis.launch().await);
    wait_healthy(&client, &server).await;
    let r = get(&client, &server, "/profile").await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the saved session is recognised again, without a restart"
    );
    let lines = server.drain().await;
    assert!(!lines.iter().any(|l| l.contains("panicked")), "no panic");
    let _ = server.child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_postgres_gives_503_and_the_instance_recovers_by_itself() {
    let Some(pg) = PrivatePostgres::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut env = common::base_env(&dir);
    env.retain(|(k, _)| k != "LATCHKEY_DATABASE_URL");
    env.push(("LATCHKEY_DATABASE_URL".into(), pg.url()));
    common::add_user(&env, "ann", PASSWORD, &[]).await;
    let mut server = ServerProcess::start(dir.path(), &env).await;
    let (client, _jar) = common::client();
    assert_eq!(login(&client, &server).await, StatusCode::OK);
    assert_eq!(
        get(&client, &server, "/profile").await.status(),
        StatusCode::OK
    );

    pg.stop().await;
    assert_unavailable(&client, &server).await;

    assert!(pg.launch().await);
    wait_healthy(&client, &server).await;
    assert_eq!(
        get(&client, &server, "/profile").await.status(),
        StatusCode::OK,
        "recovered without a restart"
    );
    let lines = server.drain().await;
    assert!(!lines.iter().any(|l| l.contains("panicked")), "no panic");
    let _ = server.child.kill().await;
}
