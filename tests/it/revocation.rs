//! Revocations that must hold although the usual news of them fails to
//! arrive: a change feed that is connected but silent, and changes made
//! outside latchkey (by hand, in the database).

use crate::{common, support};

use std::time::Duration;

use common::{PASSWORD, TestApp};
use reqwest::StatusCode;
use sqlx::Connection as _;

/// An in-process server on a fresh PostgreSQL database, with ann signed in
/// and her session cached; and an administrator's connection to it.
async fn ann_cached_on_postgres(
    extra: &[(&str, &str)],
) -> Option<(TestApp, sqlx::PgConnection, (String, String))> {
    let (admin, db_url, name) = support::fresh_postgres_database().await?;
    let mut env = vec![("LATCHKEY_DATABASE_URL", db_url.as_str())];
    env.extend_from_slice(extra);
    let app = TestApp::spawn_with(&env).await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    app.warm_cache().await;
    let db = sqlx::PgConnection::connect(&db_url).await.unwrap();
    Some((app, db, (admin, name)))
}

/// Sends SIGCONT to a stopped process when dropped, also when a test fails.
struct Stopped(i32);

impl Stopped {
    fn stop(pid: i32) -> Self {
        let done = std::process::Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(done.success(), "kill -STOP {pid}");
        Self(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// A change feed whose connection stays open but delivers nothing (here:
/// the PostgreSQL backend process serving the instance's `LISTEN`, frozen
/// with SIGSTOP) is distrusted once its heartbeats stop coming back, so a
/// revocation made meanwhile holds within the feed timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_change_feed_is_distrusted_within_its_timeout() {
    use sqlx::Connection as _;
    if !support::is_root() {
        support::skip(
            "frozen change feed",
            "needs root to stop a PostgreSQL backend",
        );
        return;
    }
    let Some((admin, db_url, name)) = support::fresh_postgres_database().await else {
        return;
    };
    // Long enough that the CLI below surely finishes inside it.
    let timeout = Duration::from_secs(3);
    let app = common::TestApp::spawn_with(&[
        ("LATCHKEY_DATABASE_URL", &db_url),
        ("LATCHKEY_CHANGE_FEED_TIMEOUT", "3s"),
    ])
    .await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    app.warm_cache().await;

    let mut db = sqlx::PgConnection::connect(&admin).await.unwrap();
    let listener: i32 = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
    )
    .bind(&name)
    .fetch_one(&mut db)
    .await
    .unwrap();
    let frozen = Stopped::stop(listener);
    app.cli_ok(&["user", "disable", "ann"], None).await;
    assert!(
        !app.auth.cache().is_empty(),
        "the frozen feed did not deliver the change"
    );
    // Distrusted at most a quarter of the timeout (one health check) after
    // it passed; half a second more for a loaded machine.
    let bound = timeout + timeout / 4 + Duration::from_millis(500);
    common::within(
        bound,
        "frozen feed",
        StatusCode::OK,
        StatusCode::UNAUTHORIZED,
        || app.profile_status(),
    )
    .await;
    drop(frozen);
    drop(app);
    support::drop_postgres_database(&admin, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_truncated_by_hand_are_refused_within_the_feed_bound() {
    let Some((app, mut db, (admin, name))) = ann_cached_on_postgres(&[]).await else {
        return;
    };
    sqlx::raw_sql("TRUNCATE sessions")
        .execute(&mut db)
        .await
        .unwrap();
    app.signed_out_within_the_feed_bound("after TRUNCATE sessions")
        .await;
    drop(app);
    support::drop_postgres_database(&admin, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_deleted_by_hand_is_signed_out_within_the_feed_bound() {
    let Some((app, mut db, (admin, name))) = ann_cached_on_postgres(&[]).await else {
        return;
    };
    sqlx::raw_sql("DELETE FROM users WHERE username = 'ann'")
        .execute(&mut db)
        .await
        .unwrap();
    app.signed_out_within_the_feed_bound("after DELETE FROM users")
        .await;
    drop(app);
    support::drop_postgres_database(&admin, &name).await;
}

/// The SQLite cache learns what changed from the `changes` table, not from
/// the bare fact that the database file was written: sign-ins (which write)
/// leave other cached sessions alone, and a change made by the CLI removes
/// exactly what it concerns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writes_that_change_nothing_cached_leave_the_cache_alone() {
    let app = TestApp::spawn().await;
    for (name, password) in [("ann", PASSWORD), ("carol", common::OTHER_PASSWORD)] {
        app.add_user(name, password, &[]).await;
    }
    app.add_user("bob", PASSWORD, &[]).await;
    let (carol, _) = common::client();
    app.sign_in("ann", PASSWORD).await;
    app.warm_cache().await;
    assert_eq!(
        common::json_login(&carol, app.url("/login"), "carol", common::OTHER_PASSWORD)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let carols_profile = || async {
        carol
            .get(app.url("/profile"))
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .unwrap()
            .status()
    };
    // Both sessions cached (the first look-up may race the login's own
    // file events, so ask until both stay).
    common::eventually(common::FEED_BOUND, "both cached", || async {
        assert_eq!(app.profile_status().await, StatusCode::OK);
        assert_eq!(carols_profile().await, StatusCode::OK);
        app.auth.cache().len() == 2
    })
    .await;
    // Sign-ins write to the database; nothing cached changes.
    for _ in 0..5 {
        let (bob, _) = common::client();
        let status = common::json_login(&bob, app.url("/login"), "bob", PASSWORD)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK);
    }
    // The CLI disables carol: her session leaves the cache, ann's stays.
    app.cli_ok(&["user", "disable", "carol"], None).await;
    common::eventually(
        common::FEED_BOUND,
        "carol's session leaves the cache",
        || async {
            let len = app.auth.cache().len();
            assert_ne!(len, 0, "the cache was emptied");
            len == 1
        },
    )
    .await;
    assert_eq!(app.profile_status().await, StatusCode::OK);
    assert_eq!(carols_profile().await, StatusCode::UNAUTHORIZED);
}

/// An in-process server whose sessions live in Redis (database `db`, a
/// fresh prefix), with ann signed in and her session cached; and a Redis
/// client on that database.
async fn ann_cached_on_redis(db: u8) -> Option<(TestApp, fred::clients::Client, String)> {
    use fred::prelude::*;
    let base = support::redis_url().await?;
    let mut url: url::Url = base.parse().unwrap();
    url.set_path(&format!("/{db}"));
    let prefix = support::fresh_prefix();
    let app = TestApp::spawn_with(&[
        ("LATCHKEY_SESSION_STORE_URL", url.as_str()),
        ("LATCHKEY_SESSION_STORE_PREFIX", &prefix),
    ])
    .await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    app.warm_cache().await;
    let client = Builder::from_config(Config::from_url(url.as_str()).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    Some((app, client, prefix))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_deleted_by_hand_in_redis_is_refused_within_the_feed_bound() {
    use fred::prelude::*;
    let Some((app, redis, prefix)) = ann_cached_on_redis(0).await else {
        return;
    };
    let deleted: i64 = redis
        .eval(
            "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do \
             n = n + redis.call('DEL', k) end return n",
            Vec::<String>::new(),
            vec![format!("{{{prefix}}}:s:*")],
        )
        .await
        .unwrap();
    assert_eq!(deleted, 1, "ann's one session");
    app.signed_out_within_the_feed_bound("after DEL in Redis")
        .await;
    support::drop_redis_prefix(&support::redis_url().await.unwrap(), &prefix).await;
}

/// FLUSHDB reports no keyspace event: the feed's heartbeat finds its marker
/// key gone. (Database 9 of the test server, which no other test uses.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_redis_database_is_noticed_within_the_feed_bound() {
    use fred::prelude::*;
    let Some((app, redis, _prefix)) = ann_cached_on_redis(9).await else {
        return;
    };
    let _: String = redis
        .custom(fred::cmd!("FLUSHDB"), Vec::<String>::new())
        .await
        .unwrap();
    app.signed_out_within_the_feed_bound("after FLUSHDB").await;
}
