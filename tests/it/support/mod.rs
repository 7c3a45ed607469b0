//! Store fixtures for the conformance suite and the multi-instance tests:
//! memory, a temporary SQLite file, and a throwaway PostgreSQL database.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use latchkey::store::Stores;
use sqlx::Connection as _;

/// Names the PostgreSQL server for tests (any database on it; tests create their own).
pub const POSTGRES_ENV: &str = "LATCHKEY_TEST_POSTGRES_URL";
/// Where tests look for PostgreSQL when [`POSTGRES_ENV`] is not set.
pub const POSTGRES_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Names the Redis server for tests; each test uses a key prefix of its own.
pub const REDIS_ENV: &str = "LATCHKEY_TEST_REDIS_URL";
/// Where tests look for Redis when [`REDIS_ENV`] is not set.
pub const REDIS_DEFAULT: &str = "redis://127.0.0.1:6379/";

/// When set (CI sets it), a missing backend fails the tests instead of skipping them.
pub const REQUIRE_ENV: &str = "LATCHKEY_TEST_REQUIRE_BACKENDS";

pub struct StoreFixture {
    pub stores: Stores,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_admin: Option<(String, String)>,
    redis_prefix: Option<(String, String)>,
}

/// A Redis URL that answers, or a skip.
pub async fn redis_url() -> Option<String> {
    use fred::prelude::*;
    let url = std::env::var(REDIS_ENV).unwrap_or_else(|_| REDIS_DEFAULT.to_owned());
    let client = Builder::from_config(Config::from_url(&url).ok()?)
        .with_connection_config(|c| c.connection_timeout = std::time::Duration::from_secs(1))
        .build()
        .ok()?;
    let ok = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        client.init().await.is_ok() && client.ping::<String>(None).await.is_ok()
    })
    .await
    .unwrap_or(false);
    let _ = client.quit().await;
    if ok {
        Some(url)
    } else {
        skip("Redis", &format!("no server at {url}; set {REDIS_ENV}"));
        None
    }
}

/// A key prefix no other test run uses.
pub fn fresh_prefix() -> String {
    format!("latchkey-test-{}", hex_id())
}

/// Deletes every key under a prefix.
pub async fn drop_redis_prefix(url: &str, prefix: &str) {
    use fred::prelude::*;
    let Ok(config) = Config::from_url(url) else {
        return;
    };
    let Ok(client) = Builder::from_config(config).build() else {
        return;
    };
    if client.init().await.is_ok() {
        let script =
            "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 0";
        let _: Result<i64, _> = client
            .eval(script, Vec::<String>::new(), vec![format!("{{{prefix}}}*")])
            .await;
        let _ = client.quit().await;
    }
}

/// Says once per test binary why a backend's tests were skipped, or fails
/// when backends are required.
pub fn skip(backend: &str, why: &str) {
    if std::env::var_os(REQUIRE_ENV).is_some() {
        panic!("{backend} tests are required ({REQUIRE_ENV} is set) but cannot run: {why}");
    }
    // Written past the test harness's capture, so that a passing run still
    // says what it did not test.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {backend} tests: {why}");
}

/// A fresh, empty PostgreSQL database; returns (admin URL, database URL, name).
pub async fn fresh_postgres_database() -> Option<(String, String, String)> {
    let admin = std::env::var(POSTGRES_ENV).unwrap_or_else(|_| POSTGRES_DEFAULT.to_owned());
    let mut conn = match sqlx::PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) => {
            skip(
                "PostgreSQL",
                &format!("no server at {admin} ({e}); set {POSTGRES_ENV}"),
            );
            return None;
        }
    };
    let name = format!("latchkey_test_{}", hex_id());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut url: url::Url = admin.parse().unwrap();
    url.set_path(&format!("/{name}"));
    Some((admin, url.to_string(), name))
}

pub async fn drop_postgres_database(admin: &str, name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}

fn hex_id() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

impl StoreFixture {
    pub fn memory() -> Self {
        Self {
            stores: Stores::single(latchkey::store::MemoryStore::default()),
            url: "memory:".into(),
            _dir: None,
            pg_admin: None,
            redis_prefix: None,
        }
    }

    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        Self {
            stores: Stores::open(&url).await.unwrap(),
            url,
            _dir: Some(dir),
            pg_admin: None,
            redis_prefix: None,
        }
    }

    pub async fn postgres() -> Option<Self> {
        let (admin, url, name) = fresh_postgres_database().await?;
        Some(Self {
            stores: Stores::open(&url).await.unwrap(),
            url,
            _dir: None,
            pg_admin: Some((admin, name)),
            redis_prefix: None,
        })
    }

    /// Sessions and counters in Redis under a fresh prefix, users in memory.
    pub async fn redis() -> Option<Self> {
        let url = redis_url().await?;
        let prefix = fresh_prefix();
        let stores = Stores::open_with(&latchkey::store::StoreOptions {
            database_url: "memory:",
            session_store_url: Some(&url),
            key_prefix: &prefix,
            idle_timeout: std::time::Duration::from_secs(3600),
            absolute_timeout: std::time::Duration::from_secs(12 * 3600),
        })
        .await
        .unwrap();
        Some(Self {
            stores,
            url: url.clone(),
            _dir: None,
            pg_admin: None,
            redis_prefix: Some((url, prefix)),
        })
    }

    pub async fn cleanup(self) {
        if let Some((admin, name)) = &self.pg_admin {
            drop(self.stores);
            drop_postgres_database(admin, name).await;
        } else if let Some((url, prefix)) = &self.redis_prefix {
            drop_redis_prefix(url, prefix).await;
        }
    }
}

/// How many keys exist under a prefix.
pub async fn count_redis_keys(url: &str, prefix: &str) -> i64 {
    use fred::prelude::*;
    let client = Builder::from_config(Config::from_url(url).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    let script = "return #redis.call('KEYS', ARGV[1])";
    let n: i64 = client
        .eval(script, Vec::<String>::new(), vec![format!("{{{prefix}}}*")])
        .await
        .unwrap();
    let _ = client.quit().await;
    n
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether the tests run as root (needed to stop or start server processes
/// of other users).
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}
