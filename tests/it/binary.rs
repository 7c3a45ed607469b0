//! The real `latchkey serve` process: first run on an empty directory with
//! no configuration, and the audit trail it writes.

use crate::common;

use common::PASSWORD;
use common::process::ServerProcess;
use reqwest::{StatusCode, header};
use serde_json::Value;

fn json_field<'a>(line: &'a Value, name: &str) -> Option<&'a str> {
    line["fields"][name].as_str()
}

#[tokio::test]
async fn a_newcomer_can_sign_in_on_first_run_without_any_configuration() {
    let dir = tempfile::tempdir().unwrap();
    // No configuration at all: ServerProcess adds only port 0 and JSON logs.
    let mut server = ServerProcess::start(dir.path(), &[]).await;
    let link_line = server
        .seen
        .iter()
        .find(|l| l.contains("one-time link"))
        .cloned()
        .unwrap_or_else(|| panic!("no setup link logged: {:#?}", server.seen));
    let addr = server.base.trim_start_matches("http://").to_owned();
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
    assert!(
        !server
            .seen
            .iter()
            .any(|l| l.contains("below OWASP's minimum")),
        "the default argon2 parameters are OWASP's"
    );
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
    common::add_user(&with_db, "ann", PASSWORD, &[]).await;
    let mut server = ServerProcess::start(dir.path(), &owned).await;
    let base = server.base.clone();
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
    // Asked with --verbose, the CLI prints its audit trail too.
    let out = common::run_cli(
        &with_db,
        &["-v", "session", "revoke", "--user", "ann"],
        None,
    )
    .await;
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
    // The two refused attempts were the last requests: their lines come last.
    for _ in 0..2 {
        server.wait_for("\"throttled\"").await;
    }
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

#[tokio::test]
async fn a_user_name_cannot_forge_fields_in_the_text_log() {
    use tokio::io::AsyncReadExt as _;
    let dir = tempfile::tempdir().unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let mut env = common::base_env(&dir);
    env.retain(|(k, _)| k != "LATCHKEY_BIND");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .envs(env)
        .env("LATCHKEY_BIND", addr.to_string())
        .env("LATCHKEY_PUBLIC_URL", format!("http://{addr}"))
        .env("LATCHKEY_LOG_FORMAT", "text")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (client, _) = common::client();
    let forged = "root outcome=success client_ip=10.0.0.1";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        let sent = client
            .post(format!("http://{addr}/login"))
            .header(header::ACCEPT, "application/json")
            .json(&serde_json::json!({"username": forged, "password": "wrong-password-1"}))
            .send()
            .await;
        match sent {
            Ok(r) => break r.status(),
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the server never answered: {e}"),
        }
    };
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    child.start_kill().unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .await
        .unwrap();
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("latchkey::audit"))
        .collect();
    assert_eq!(audit.len(), 1, "{log}");
    assert!(
        audit[0].contains(r#"username="root outcome=success client_ip=10.0.0.1""#),
        "the name is one quoted field: {}",
        audit[0]
    );
    assert!(audit[0].contains(r#"outcome="failure""#), "{}", audit[0]);
    assert!(!audit[0].contains("username=root "), "{}", audit[0]);
}
