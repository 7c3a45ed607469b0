//! Several instances sharing PostgreSQL (and, in a second configuration,
//! PostgreSQL + Redis): a login, a logout, a revocation or a timeout
//! anywhere holds everywhere, as soon as the change feed has told the other
//! instances (see [`common::FEED_BOUND`]). They are `latchkey serve`
//! processes, except where the test must move their clock.

use crate::{common, support};

use std::time::Duration;

use common::process::ServerProcess;
use common::within_the_feed_bound;
use common::{OTHER_PASSWORD, PASSWORD, run_cli};
use reqwest::{Client, StatusCode, header};
use serde_json::Value;

/// One PostgreSQL database (and, with Redis, one key prefix) made for a
/// test, with user ann in it: what its instances share.
struct Shared {
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    pg: (String, String),
    redis: Option<(String, String)>,
}

impl Shared {
    async fn new(with_redis: bool, extra: &[(&str, &str)]) -> Option<Self> {
        let redis = if with_redis {
            let url = support::redis_url().await?;
            Some((url, support::fresh_prefix()))
        } else {
            None
        };
        let (admin, db_url, name) = support::fresh_postgres_database().await?;
        let dir = tempfile::tempdir().unwrap();
        let mut env: Vec<(String, String)> = vec![
            ("LATCHKEY_DATABASE_URL".into(), db_url),
            ("LATCHKEY_SECRET".into(), common::SECRET.into()),
            ("LATCHKEY_ARGON2_MEMORY_KIB".into(), "1024".into()),
            ("LATCHKEY_ARGON2_ITERATIONS".into(), "1".into()),
            ("LATCHKEY_REFUSAL_DELAY".into(), "0".into()),
        ];
        if let Some((url, prefix)) = &redis {
            env.push(("LATCHKEY_SESSION_STORE_URL".into(), url.clone()));
            env.push(("LATCHKEY_SESSION_STORE_PREFIX".into(), prefix.clone()));
        }
        for (k, v) in extra {
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        common::add_user(&env, "ann", PASSWORD, &[]).await;
        Some(Self {
            env,
            dir,
            pg: (admin, name),
            redis,
        })
    }

    async fn drop_stores(&self) {
        support::drop_postgres_database(&self.pg.0, &self.pg.1).await;
        if let Some((url, prefix)) = &self.redis {
            support::drop_redis_prefix(url, prefix).await;
        }
    }
}

/// Two `latchkey serve` processes over one [`Shared`] configuration.
struct Pair {
    a: ServerProcess,
    b: ServerProcess,
    shared: Shared,
}

impl Pair {
    async fn start(with_redis: bool, extra: &[(&str, &str)]) -> Option<Self> {
        let shared = Shared::new(with_redis, extra).await?;
        let a = ServerProcess::start(shared.dir.path(), &shared.env).await;
        let b = ServerProcess::start(shared.dir.path(), &shared.env).await;
        Some(Self { a, b, shared })
    }

    async fn cleanup(mut self) {
        let _ = self.a.child.kill().await;
        let _ = self.b.child.kill().await;
        self.shared.drop_stores().await;
    }
}

async fn login(client: &Client, server: &ServerProcess, name: &str, password: &str) -> StatusCode {
    common::json_login(client, server.url("/login"), name, password)
        .send()
        .await
        .unwrap()
        .status()
}

async fn profile(client: &Client, server: &ServerProcess) -> reqwest::Response {
    client
        .get(server.url("/profile"))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap()
}

/// `server` refuses the client's session within [`common::FEED_BOUND`].
async fn refused_within_the_feed_bound(client: &Client, server: &ServerProcess, what: &str) {
    within_the_feed_bound(what, StatusCode::OK, StatusCode::UNAUTHORIZED, || async {
        profile(client, server).await.status()
    })
    .await;
}

async fn a_login_on_one_instance_holds_on_the_other(with_redis: bool) {
    let Some(p) = Pair::start(with_redis, &[]).await else {
        return;
    };
    let (client, _jar) = common::client();
    assert_eq!(login(&client, &p.a, "ann", PASSWORD).await, StatusCode::OK);
    if let Some((url, prefix)) = &p.shared.redis {
        assert!(
            support::count_redis_keys(url, prefix).await > 0,
            "the session lives in Redis"
        );
    }
    for server in [&p.b, &p.a, &p.b] {
        let r = profile(&client, server).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.json::<Value>().await.unwrap()["username"], "ann");
    }
    p.cleanup().await;
}

async fn a_logout_on_b_is_refused_on_a_once_the_feed_has_told_it(with_redis: bool) {
    let Some(p) = Pair::start(with_redis, &[]).await else {
        return;
    };
    let (client, jar) = common::client();
    assert_eq!(login(&client, &p.a, "ann", PASSWORD).await, StatusCode::OK);
    let cookie = common::cookie_named(&jar, &p.a.base, "latchkey").unwrap();
    // Both instances have seen (and cached) the session.
    let csrf: Value = profile(&client, &p.a).await.json().await.unwrap();
    assert_eq!(profile(&client, &p.b).await.status(), StatusCode::OK);
    let r = client
        .post(p.b.url("/logout"))
        .header(header::ACCEPT, "application/json")
        .header("x-csrf-token", csrf["csrf_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The other instance's cache hears of the logout through its change feed.
    let replay = common::client().0;
    within_the_feed_bound(
        "the old cookie on A after a logout on B",
        StatusCode::OK,
        StatusCode::UNAUTHORIZED,
        || async {
            replay
                .get(p.a.url("/profile"))
                .header(header::ACCEPT, "application/json")
                .header(header::COOKIE, format!("latchkey={cookie}"))
                .send()
                .await
                .unwrap()
                .status()
        },
    )
    .await;
    p.cleanup().await;
}

async fn cli_changes_end_sessions_on_every_instance(with_redis: bool) {
    let Some(p) = Pair::start(with_redis, &[]).await else {
        return;
    };
    let (client, _jar) = common::client();
    assert_eq!(login(&client, &p.a, "ann", PASSWORD).await, StatusCode::OK);
    assert_eq!(profile(&client, &p.a).await.status(), StatusCode::OK);
    assert_eq!(profile(&client, &p.b).await.status(), StatusCode::OK);
    assert!(
        run_cli(&p.shared.env, &["user", "disable", "ann"], None)
            .await
            .status
            .success()
    );
    refused_within_the_feed_bound(&client, &p.a, "instance A").await;
    refused_within_the_feed_bound(&client, &p.b, "instance B").await;
    assert!(
        run_cli(&p.shared.env, &["user", "enable", "ann"], None)
            .await
            .status
            .success()
    );

    assert_eq!(login(&client, &p.b, "ann", PASSWORD).await, StatusCode::OK);
    assert_eq!(profile(&client, &p.a).await.status(), StatusCode::OK);
    assert_eq!(profile(&client, &p.b).await.status(), StatusCode::OK);
    let out = run_cli(
        &p.shared.env,
        &["user", "passwd", "ann", "--password-stdin"],
        Some(OTHER_PASSWORD),
    )
    .await;
    assert!(out.status.success());
    refused_within_the_feed_bound(&client, &p.a, "instance A").await;
    refused_within_the_feed_bound(&client, &p.b, "instance B").await;

    assert_eq!(
        login(&client, &p.a, "ann", OTHER_PASSWORD).await,
        StatusCode::OK
    );
    assert_eq!(profile(&client, &p.a).await.status(), StatusCode::OK);
    assert_eq!(profile(&client, &p.b).await.status(), StatusCode::OK);
    assert!(
        run_cli(&p.shared.env, &["session", "revoke", "--user", "ann"], None)
            .await
            .status
            .success()
    );
    refused_within_the_feed_bound(&client, &p.b, "instance B").await;
    refused_within_the_feed_bound(&client, &p.a, "instance A").await;

    assert_eq!(
        login(&client, &p.a, "ann", OTHER_PASSWORD).await,
        StatusCode::OK
    );
    assert_eq!(profile(&client, &p.b).await.status(), StatusCode::OK);
    assert!(
        run_cli(
            &p.shared.env,
            &["user", "roles", "ann", "--add", "admin"],
            None
        )
        .await
        .status
        .success()
    );
    within_the_feed_bound(
        "a role granted by the CLI",
        StatusCode::FORBIDDEN,
        StatusCode::OK,
        || async {
            client
                .get(p.b.url("/admin"))
                .header(header::ACCEPT, "application/json")
                .send()
                .await
                .unwrap()
                .status()
        },
    )
    .await;
    assert_eq!(
        profile(&client, &p.a).await.status(),
        StatusCode::OK,
        "the rotated cookie works everywhere"
    );
    p.cleanup().await;
}

async fn failures_spread_over_instances_still_lock_the_account(with_redis: bool) {
    let Some(p) = Pair::start(with_redis, &[]).await else {
        return;
    };
    let (client, _jar) = common::client();
    for i in 0..5 {
        let server = if i % 2 == 0 { &p.a } else { &p.b };
        assert_eq!(
            login(&client, server, "ann", "wrong-password-here").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(&client, &p.a, "ann", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login(&client, &p.b, "ann", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    p.cleanup().await;
}

/// Two instances in this process, on one [`Shared`] store and one clock
/// that the test moves forward instead of sleeping through the timeouts.
/// The timeouts are long in real time: Redis expires its keys by the real
/// clock, which must not run out while the test's clock is still short of
/// them however slow the machine.
async fn timeouts_are_enforced_by_every_instance(with_redis: bool) {
    let Some(shared) = Shared::new(
        with_redis,
        &[
            ("LATCHKEY_BIND", "127.0.0.1:0"),
            ("LATCHKEY_IDLE_TIMEOUT", "60s"),
            ("LATCHKEY_ABSOLUTE_TIMEOUT", "120s"),
        ],
    )
    .await
    else {
        return;
    };
    let clock = std::sync::Arc::new(latchkey::clock::AdjustableClock::default());
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let a = common::TestApp::start_with_clock(dir.clone(), shared.env.clone(), clock.clone()).await;
    let b = common::TestApp::start_with_clock(dir, shared.env.clone(), clock.clone()).await;
    let (client, _jar) = common::client();
    let profile = |app: &common::TestApp| {
        client
            .get(app.url("/profile"))
            .header(header::ACCEPT, "application/json")
            .send()
    };
    let login = || common::json_login(&client, a.url("/login"), "ann", PASSWORD).send();
    // Idle: both have cached the session, then nobody uses it.
    assert_eq!(login().await.unwrap().status(), StatusCode::OK);
    assert_eq!(profile(&a).await.unwrap().status(), StatusCode::OK);
    assert_eq!(profile(&b).await.unwrap().status(), StatusCode::OK);
    clock.advance(Duration::from_secs(30));
    assert_eq!(
        profile(&b).await.unwrap().status(),
        StatusCode::OK,
        "not yet idle"
    );
    clock.advance(Duration::from_secs(75));
    assert_eq!(
        profile(&b).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        profile(&a).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // Absolute: kept busy through A, refused by B once it has run out.
    assert_eq!(login().await.unwrap().status(), StatusCode::OK);
    for _ in 0..9 {
        assert_eq!(profile(&a).await.unwrap().status(), StatusCode::OK);
        clock.advance(Duration::from_secs(12));
    }
    assert_eq!(
        profile(&b).await.unwrap().status(),
        StatusCode::OK,
        "108 s in"
    );
    clock.advance(Duration::from_secs(15));
    assert_eq!(
        profile(&b).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        profile(&a).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    shared.drop_stores().await;
}

macro_rules! both_configurations {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(false).await;
                }
            )*
        }
        mod postgres_and_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(true).await;
                }
            )*
        }
    };
}

both_configurations!(
    a_login_on_one_instance_holds_on_the_other,
    a_logout_on_b_is_refused_on_a_once_the_feed_has_told_it,
    cli_changes_end_sessions_on_every_instance,
    failures_spread_over_instances_still_lock_the_account,
    timeouts_are_enforced_by_every_instance,
);
