//! Real Redis deployments on loopback ports, from Debian's `redis-server`:
//! Sentinel (a primary, a replica and three sentinels) with a failover
//! right after a sign-out, and a three-primary Cluster with a node restart.

use crate::{common, support};

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{PASSWORD, TestApp};
use reqwest::{Client, StatusCode, header};
use tokio::process::{Child, Command};

/// A `redis-server` process; killed when dropped.
struct Server {
    port: u16,
    child: Child,
}

impl Server {
    /// Starts `redis-server` with a config file in `dir` holding `config`.
    async fn start(dir: &Path, name: &str, config: &str, sentinel: bool) -> Option<Self> {
        Self::start_on(support::free_port(), dir, name, config, sentinel).await
    }

    /// [`Server::start`] on a given port (a restart).
    async fn start_on(
        port: u16,
        dir: &Path,
        name: &str,
        config: &str,
        sentinel: bool,
    ) -> Option<Self> {
        let conf = dir.join(format!("{name}.conf"));
        let text = format!(
            "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\n{config}\n",
            dir.display()
        );
        std::fs::write(&conf, text).unwrap();
        let mut command = Command::new("redis-server");
        command.arg(&conf);
        if sentinel {
            command.arg("--sentinel");
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        let server = Self { port, child };
        common::eventually(Duration::from_secs(10), "redis-server starts", || async {
            cli(port, &["ping"]).await.as_deref() == Some("PONG")
        })
        .await;
        Some(server)
    }
}

/// `redis-cli -p PORT ARGS…`, its output trimmed, or `None` if it failed.
async fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn have_redis_server() -> bool {
    let found = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        support::skip("Redis Sentinel and Cluster", "no redis-server on PATH");
    }
    found
}

async fn profile(client: &Client, app: &TestApp, cookie: &str) -> StatusCode {
    client
        .get(app.url("/profile"))
        .header(header::ACCEPT, "application/json")
        .header(header::COOKIE, format!("latchkey={cookie}"))
        .send()
        .await
        .map_or(StatusCode::BAD_GATEWAY, |r| r.status())
}

/// Signs ann in with a client of its own; returns the session cookie and
/// the CSRF token.
async fn sign_in(app: &TestApp) -> (String, String) {
    let (client, jar) = common::client();
    let r = common::json_login(&client, app.url("/login"), "ann", PASSWORD)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    let cookie = common::cookie_named(&jar, &app.base, "latchkey").unwrap();
    (cookie, body["csrf_token"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_out_survives_a_sentinel_failover_and_live_sessions_too() {
    if !have_redis_server() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(primary) = Server::start(dir.path(), "primary", "", false).await else {
        return;
    };
    let replica_of = format!("replicaof 127.0.0.1 {}", primary.port);
    let replica = Server::start(dir.path(), "replica", &replica_of, false)
        .await
        .unwrap();
    let monitor = format!(
        "sentinel monitor main 127.0.0.1 {} 2\n\
         sentinel down-after-milliseconds main 1000\n\
         sentinel failover-timeout main 10000",
        primary.port
    );
    let mut sentinels = Vec::new();
    for i in 0..3 {
        sentinels.push(
            Server::start(dir.path(), &format!("sentinel{i}"), &monitor, true)
                .await
                .unwrap(),
        );
    }
    // The replica has caught up, and every sentinel knows it.
    common::eventually(
        Duration::from_secs(20),
        "replication and sentinels ready",
        || async {
            let link = cli(replica.port, &["info", "replication"])
                .await
                .unwrap_or_default();
            let mut ready = link.contains("master_link_status:up");
            for s in &sentinels {
                let known = cli(s.port, &["sentinel", "replicas", "main"])
                    .await
                    .unwrap_or_default();
                ready &= known.contains(&replica.port.to_string());
            }
            ready
        },
    )
    .await;
    let url = format!(
        "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName=main&node=127.0.0.1:{}&node=127.0.0.1:{}",
        sentinels[0].port, sentinels[1].port, sentinels[2].port
    );
    let app = TestApp::spawn_with(&[
        ("LATCHKEY_SESSION_STORE_URL", &url),
        ("LATCHKEY_LOGIN_RATE", "1000"),
    ])
    .await;
    app.add_user("ann", PASSWORD, &[]).await;
    let (live, _) = sign_in(&app).await;
    let (revoked, token) = sign_in(&app).await;
    let client = Client::new();
    assert_eq!(profile(&client, &app, &revoked).await, StatusCode::OK);

    // Sign out, and kill the primary the moment the sign-out is acknowledged.
    let out = client
        .post(app.url("/logout"))
        .header(header::ACCEPT, "application/json")
        .header(header::COOKIE, format!("latchkey={revoked}"))
        .header(header::ORIGIN, &app.base)
        .header("x-csrf-token", token)
        .send()
        .await
        .unwrap();
    assert!(out.status().is_success() || out.status().is_redirection());
    let mut primary = primary;
    primary.child.start_kill().unwrap();
    primary.child.wait().await.unwrap();

    // Sentinel promotes the replica.
    let promoted = replica.port.to_string();
    common::eventually(
        Duration::from_secs(30),
        "the replica is promoted",
        || async {
            let addr = cli(
                sentinels[0].port,
                &["sentinel", "get-master-addr-by-name", "main"],
            )
            .await
            .unwrap_or_default();
            addr.ends_with(&promoted)
        },
    )
    .await;
    // latchkey finds the new primary by itself; until then it may answer
    // 503, never a wrong yes or no.
    common::eventually(
        Duration::from_secs(30),
        "latchkey on the new primary",
        || async {
            match profile(&client, &app, &live).await {
                StatusCode::OK => true,
                StatusCode::SERVICE_UNAVAILABLE => false,
                other => panic!("the live session got {other} during the failover"),
            }
        },
    )
    .await;
    assert_eq!(
        profile(&client, &app, &revoked).await,
        StatusCode::UNAUTHORIZED,
        "the acknowledged sign-out survived the failover"
    );
    // And it keeps working: a new sign-in on the new primary.
    let (again, _) = sign_in(&app).await;
    assert_eq!(profile(&client, &app, &again).await, StatusCode::OK);
    // Sessions deleted by hand on the new primary are noticed too: its
    // keyspace events were turned on when latchkey reconnected to it.
    let deleted = cli(
        replica.port,
        &[
            "eval",
            "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do \
             n = n + redis.call('DEL', k) end return n",
            "0",
            "{latchkey}:s:*",
        ],
    )
    .await
    .unwrap();
    assert_ne!(deleted, "0", "sessions were deleted");
    common::within_the_feed_bound(
        "deleted on the new primary",
        StatusCode::OK,
        StatusCode::UNAUTHORIZED,
        || profile(&client, &app, &again),
    )
    .await;
}

/// A three-primary Cluster (no replicas; each node keeps an append-only
/// file, so a restarted node comes back with its keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_counters_work_on_a_cluster_and_survive_a_node_restart() {
    if !have_redis_server() {
        return;
    }
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let config = "cluster-enabled yes\ncluster-config-file nodes.conf\n\
                  cluster-node-timeout 2000\nappendonly yes\nappendfsync always";
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let Some(node) = Server::start(dir.path(), &format!("node{i}"), config, false).await else {
            return;
        };
        nodes.push(node);
    }
    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addresses.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    cli(nodes[0].port, &create).await.expect("cluster create");
    common::eventually(Duration::from_secs(20), "the cluster is up", || async {
        let mut ok = true;
        for n in &nodes {
            let info = cli(n.port, &["cluster", "info"]).await.unwrap_or_default();
            ok &= info.contains("cluster_state:ok");
        }
        ok
    })
    .await;
    let url = format!(
        "redis-cluster://{}?node={}&node={}",
        addresses[0], addresses[1], addresses[2]
    );
    let app = TestApp::spawn_with(&[
        ("LATCHKEY_SESSION_STORE_URL", &url),
        ("LATCHKEY_LOGIN_MAX_FAILURES", "2"),
    ])
    .await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.add_user("bob", common::OTHER_PASSWORD, &[]).await;
    let (ann, _) = sign_in(&app).await;
    let client = Client::new();
    assert_eq!(profile(&client, &app, &ann).await, StatusCode::OK);
    // Failure counters live in the cluster too.
    for _ in 0..2 {
        assert_eq!(
            app.login_json("bob", "wrong-password-here").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        app.login_json("bob", common::OTHER_PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // Restart the node that holds latchkey's keys (one hash tag: one slot).
    let slot: u16 = cli(nodes[0].port, &["cluster", "keyslot", "{latchkey}"])
        .await
        .unwrap()
        .parse()
        .unwrap();
    let mut owner = None;
    for (i, n) in nodes.iter().enumerate() {
        let slots = cli(n.port, &["cluster", "myshards"])
            .await
            .unwrap_or_default();
        let _ = slots;
        let count: u64 = cli(n.port, &["cluster", "countkeysinslot", &slot.to_string()])
            .await
            .unwrap_or_default()
            .parse()
            .unwrap_or(0);
        if count > 0 {
            owner = Some(i);
        }
    }
    let owner = owner.expect("a node holds latchkey's keys");
    let port = nodes[owner].port;
    cli(port, &["shutdown"]).await;
    let _ = nodes[owner].child.wait().await;
    let status = profile(&client, &app, &ann).await;
    assert!(
        status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::OK,
        "while the node is down: {status}"
    );
    nodes[owner] = Server::start_on(
        port,
        dirs[owner].path(),
        &format!("node{owner}"),
        config,
        false,
    )
    .await
    .unwrap();
    common::eventually(
        Duration::from_secs(30),
        "ann's session after the restart",
        || async {
            match profile(&client, &app, &ann).await {
                StatusCode::OK => true,
                StatusCode::SERVICE_UNAVAILABLE => false,
                other => panic!("ann's session got {other} after the restart"),
            }
        },
    )
    .await;
    assert_eq!(
        app.login_json("bob", common::OTHER_PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the lock survived the restart"
    );
}
