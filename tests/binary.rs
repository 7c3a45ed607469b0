//! The real `latchkey serve` process: first run on an empty directory with
//! no configuration, and the audit trail it writes.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::PASSWORD;
use reqwest::{StatusCode, header};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

struct Server {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Server {
    fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .arg("serve")
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle`.
    async fn wait_for(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no log line with {needle:?}; saw: {:#?}", self.seen))
                .unwrap_or_else(|| panic!("server exited; saw: {:#?}", self.seen));
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Every line logged so far, after giving the server a moment.
    async fn drain(&mut self) -> Vec<String> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.clone()
    }
}

fn json_field<'a>(line: &'a Value, name: &str) -> Option<&'a str> {
    line["fields"][name].as_str()
}

#[tokio::test]
async fn a_newcomer_can_sign_in_on_first_run_without_any_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        dir.path(),
        &[
            ("LATCHKEY_BIND", "127.0.0.1:0"),
            ("LATCHKEY_LOG_FORMAT", "json"),
        ],
    );
    let link_line = server.wait_for("one-time link").await;
    let listening: Value =
        serde_json::from_str(&server.wait_for("latchkey listening").await).unwrap();
    let addr = json_field(&listening, "address").unwrap().to_owned();
    let link = link_line[link_line.find("http://").unwrap()..]
        .split(['"', ' '])
        .next()
        .unwrap()
        .to_owned();
    assert!(
        link.starts_with(&format!("http://{addr}/setup?token=")),
        "{link}"
    );
    let secret = dir.path().join("latchkey.db.secret");
    assert!(secret.exists(), "a secret is generated beside the database");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let (client, _jar) = common::client();
    let html = client
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    let csrf = html[start..].split('"').next().unwrap();
    let token = link.split("token=").nth(1).unwrap();
    let r = client
        .post(format!("http://{addr}/setup"))
        .form(&[
            ("token", token),
            ("csrf_token", csrf),
            ("username", "admin"),
            ("password", PASSWORD),
            ("password_confirm", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let me: Value = client
        .get(format!("http://{addr}/profile"))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "admin");
    assert_eq!(me["roles"], serde_json::json!(["admin"]));
    server.child.kill().await.unwrap();
}

#[tokio::test]
async fn every_login_attempt_and_logout_is_audited_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("LATCHKEY_BIND", "127.0.0.1:0"),
        ("LATCHKEY_LOG_FORMAT", "json"),
        ("LATCHKEY_SECRET", common::SECRET),
        ("LATCHKEY_ARGON2_MEMORY_KIB", "1024"),
        ("LATCHKEY_ARGON2_ITERATIONS", "1"),
        ("LATCHKEY_LOGIN_MAX_FAILURES", "2"),
    ];
    let owned: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut with_db = owned.clone();
    with_db.push((
        "LATCHKEY_DATABASE_URL".into(),
        format!("sqlite://{}", dir.path().join("latchkey.db").display()),
    ));
    assert!(
        common::run_cli(
            &with_db,
            &["user", "add", "ann", "--password-stdin"],
            Some(PASSWORD)
        )
        .await
        .status
        .success()
    );
    let mut server = Server::start(dir.path(), &env);
    let listening: Value =
        serde_json::from_str(&server.wait_for("latchkey listening").await).unwrap();
    let base = format!("http://{}", json_field(&listening, "address").unwrap());
    let (client, jar) = common::client();
    let login = |password: &'static str| {
        let client = client.clone();
        let url = format!("{base}/login");
        async move {
            client
                .post(url)
                .header(header::ACCEPT, "application/json")
                .json(&serde_json::json!({"username": "ann", "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    let wrong = "Wrong-Secret-Sentinel-42";
    assert_eq!(login(PASSWORD).await.status(), StatusCode::OK);
    let cookie = common::cookie_named(&jar, &base, "latchkey").unwrap();
    let csrf: Value = client
        .get(format!("{base}/profile"))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf = csrf["csrf_token"].as_str().unwrap().to_owned();
    let r = client
        .post(format!("{base}/logout"))
        .header("x-csrf-token", &csrf)
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(login(wrong).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(login(wrong).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(login(wrong).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        login(PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "right password, still locked"
    );
    let out = common::run_cli(&with_db, &["session", "revoke", "--user", "ann"], None).await;
    assert!(out.status.success());
    let revocation = common::stderr(&out);
    let revocation: Value = serde_json::from_str(
        revocation
            .lines()
            .find(|l| l.contains("revocation"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(revocation["target"], "latchkey::audit");
    assert_eq!(json_field(&revocation, "username"), Some("ann"));
    let lines = server.drain().await;
    let events: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "latchkey::audit")
        .collect();
    let outcomes: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                json_field(e, "event").unwrap_or("").to_owned(),
                json_field(e, "outcome").unwrap_or("").to_owned(),
            )
        })
        .collect();
    for expected in [
        ("login", "success"),
        ("logout", "success"),
        ("login", "failure"),
        ("login", "throttled"),
    ] {
        assert!(
            outcomes
                .iter()
                .any(|(e, o)| e == expected.0 && o == expected.1),
            "missing {expected:?} in {outcomes:?}"
        );
    }
    for e in events
        .iter()
        .filter(|e| json_field(e, "event") == Some("login"))
    {
        assert_eq!(json_field(e, "username"), Some("ann"), "{e}");
        assert_eq!(json_field(e, "client_ip"), Some("127.0.0.1"), "{e}");
    }
    let all = lines.join("\n");
    assert!(
        !all.contains(PASSWORD) && !all.contains(wrong),
        "no password is ever logged"
    );
    assert!(!all.contains(&csrf), "no CSRF token is ever logged");
    assert!(
        !all.contains(cookie.split('.').next().unwrap()),
        "no session token is ever logged"
    );
    server.child.kill().await.unwrap();
}
