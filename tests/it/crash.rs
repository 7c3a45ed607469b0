//! The server killed with SIGKILL in the middle of sign-ins, page loads and
//! sign-outs, several times, on SQLite and on PostgreSQL: after a restart,
//! every user and every session whose creation was acknowledged is there,
//! and every acknowledged sign-out is still a sign-out.

use crate::{common, support};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::PASSWORD;
use common::process::ServerProcess;
use reqwest::{StatusCode, header};
use serde_json::Value;

/// What the clients were told before the server died.
#[derive(Default, Clone)]
struct Acknowledged {
    /// Session cookie → whether its sign-out was acknowledged (`Some(true)`),
    /// not asked for (`Some(false)`), or asked for without an answer (`None`:
    /// either outcome is right).
    sessions: HashMap<String, Option<bool>>,
    /// Users whose `user add` succeeded.
    users: Vec<String>,
    /// Sessions acknowledged that will not be signed out.
    kept: usize,
}

const CLIENTS: usize = 6;

/// One client: signs in, loads its profile, signs out every other time,
/// until the server stops answering.
async fn client_loop(base: String, name: String, acked: Arc<Mutex<Acknowledged>>) {
    for round in 0.. {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let Ok(r) = common::json_login(&client, format!("{base}/login"), &name, PASSWORD)
            .send()
            .await
        else {
            return;
        };
        if r.status() != StatusCode::OK {
            return;
        }
        let Some(cookie) = r
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("latchkey="))
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
        else {
            return;
        };
        let Ok(body) = r.json::<Value>().await else {
            return;
        };
        let token = body["csrf_token"].as_str().unwrap_or_default().to_owned();
        {
            let mut acked = acked.lock().unwrap();
            acked.sessions.insert(cookie.clone(), Some(false));
            acked.kept += round % 2;
        }
        let profile = client
            .get(format!("{base}/profile"))
            .header(header::ACCEPT, "application/json")
            .header(header::COOKIE, format!("latchkey={cookie}"))
            .send()
            .await;
        if profile.is_err() {
            return;
        }
        if round % 2 == 0 {
            acked.lock().unwrap().sessions.insert(cookie.clone(), None);
            let out = client
                .post(format!("{base}/logout"))
                .header(header::ACCEPT, "application/json")
                .header(header::COOKIE, format!("latchkey={cookie}"))
                .header("x-csrf-token", token)
                .header(header::ORIGIN, &base)
                .send()
                .await;
            match out {
                Ok(r) if r.status().is_success() || r.status().is_redirection() => {
                    acked.lock().unwrap().sessions.insert(cookie, Some(true));
                }
                Ok(r) => panic!("sign-out answered {}", r.status()),
                Err(_) => return,
            }
        }
    }
}

/// Runs the load against `server` and kills it with SIGKILL mid-way.
async fn load_and_kill(server: &mut ServerProcess, round: usize, acked: &Arc<Mutex<Acknowledged>>) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        tasks.spawn(client_loop(
            server.base.clone(),
            format!("user{i}"),
            acked.clone(),
        ));
    }
    let env = server.env.clone();
    let adder = acked.clone();
    tasks.spawn(async move {
        for j in 0.. {
            let name = format!("added{round}x{j}");
            let out = common::run_cli(
                &env,
                &["user", "add", &name, "--password-stdin"],
                Some(PASSWORD),
            )
            .await;
            if out.status.success() {
                adder.lock().unwrap().users.push(name);
            }
        }
    });
    // Killed once this round has had work of every kind acknowledged (not
    // after a guessed time: a loaded machine may acknowledge nothing in it).
    let before = acked.lock().unwrap().clone();
    let signed_out = |a: &Acknowledged| a.sessions.values().filter(|v| **v == Some(true)).count();
    let progressed = |now: &Acknowledged| {
        now.kept > before.kept
            && signed_out(now) > signed_out(&before)
            && now.users.len() > before.users.len()
    };
    let waited = tokio::time::Instant::now();
    while !progressed(&acked.lock().unwrap()) {
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "the load had sessions, sign-outs and a new user acknowledged within two minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    // The clients stop at their first refused connection; the CLI task is
    // cut off wherever it is (a user it was adding was not acknowledged).
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

async fn check_after_restart(server: &ServerProcess, acked: &Acknowledged) {
    let client = reqwest::Client::new();
    let mut live = 0;
    for (cookie, signed_out) in &acked.sessions {
        let status = client
            .get(server.url("/profile"))
            .header(header::ACCEPT, "application/json")
            .header(header::COOKIE, format!("latchkey={cookie}"))
            .send()
            .await
            .unwrap()
            .status();
        match signed_out {
            Some(false) => {
                assert_eq!(status, StatusCode::OK, "an acknowledged session is gone");
                live += 1;
            }
            Some(true) => assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "an acknowledged sign-out came back"
            ),
            None => assert!(
                status == StatusCode::OK || status == StatusCode::UNAUTHORIZED,
                "{status}"
            ),
        }
    }
    assert!(live > 0, "the load acknowledged some sessions");
    let listed = common::run_cli(&server.env, &["user", "list", "--json"], None).await;
    let listed = common::stdout(&listed);
    for name in &acked.users {
        assert!(listed.contains(&format!("\"{name}\"")), "{name} is gone");
    }
}

async fn acknowledged_work_survives_sigkill(dir: &std::path::Path, env: Vec<(String, String)>) {
    for i in 0..CLIENTS {
        common::add_user(&env, &format!("user{i}"), PASSWORD, &[]).await;
    }
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let mut server = ServerProcess::start(dir, &env).await;
    for round in 0..3 {
        load_and_kill(&mut server, round, &acked).await;
        server = ServerProcess::start(dir, &env).await;
        let snapshot = acked.lock().unwrap().clone();
        check_after_restart(&server, &snapshot).await;
    }
    let acked = acked.lock().unwrap();
    assert!(
        acked.sessions.values().any(|v| *v == Some(true)),
        "some sign-outs were acknowledged"
    );
    assert!(!acked.users.is_empty(), "some users were added");
}

/// The environment of a crash test: cheap hashing, and no per-address
/// sign-in limit (all clients share 127.0.0.1).
fn crash_env(dir: &tempfile::TempDir) -> Vec<(String, String)> {
    let mut env = common::base_env(dir);
    env.push(("LATCHKEY_LOGIN_RATE".into(), "1000000".into()));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_work_survives_sigkill_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let env = crash_env(&dir);
    acknowledged_work_survives_sigkill(dir.path(), env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_work_survives_sigkill_on_postgres() {
    let Some((admin, db_url, name)) = support::fresh_postgres_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut env = crash_env(&dir);
    env.retain(|(k, _)| k != "LATCHKEY_DATABASE_URL");
    env.push(("LATCHKEY_DATABASE_URL".into(), db_url));
    acknowledged_work_survives_sigkill(dir.path(), env).await;
    support::drop_postgres_database(&admin, &name).await;
}
