//! PostgreSQL: users, sessions and counters shared by several instances.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use super::{
    Attempt, FailurePolicy, FailureStore, Millis, NewUser, OpenError, SessionKey, SessionRecord,
    SessionStore, StoreError, StoreResult, UserId, UserRecord, UserStore, now_millis,
    roles_from_json, roles_to_json,
};

use std::sync::Arc;

use super::feed::{ChangeFeed, FeedSink, Sending};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Users, sessions and counters in one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

/// Runs a transaction on a task of its own, to completion even when the
/// caller stops waiting (a client that went away drops its request's future).
/// sqlx 0.9.0 returns a pooled PostgreSQL connection to the pool inside an
/// open transaction when `begin()` is cancelled mid-flight
/// (transact-rs/sqlx#4393, fixed upstream after 0.9.0): every later statement
/// on that connection, logouts and revocations included, would then never be
/// committed.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = StoreResult<T>> + Send + 'static,
) -> StoreResult<T> {
    tokio::spawn(work).await.map_err(StoreError::unavailable)?
}

fn unavailable(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::unavailable(e),
    }
}

impl PostgresStore {
    /// Opens the database named by a `postgres://` URL and applies the
    /// migrations (under an advisory lock, so instances may start together).
    ///
    /// # Errors
    /// When the server cannot be reached or the migrations fail.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        let options = PgConnectOptions::from_str(url).map_err(OpenError::connect)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // A stopped server must fail requests quickly (503), not hang them.
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await
            .map_err(OpenError::connect)?;
        MIGRATOR.run(&pool).await.map_err(OpenError::migrate)?;
        Ok(Self { pool })
    }

    async fn update_user(&self, sql: &'static str, id: UserId, now: Millis) -> StoreResult<bool> {
        let done = sqlx::query(sql)
            .bind(now)
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }
}

fn user_from_row(row: &PgRow) -> StoreResult<UserRecord> {
    let get = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    Ok(UserRecord {
        id: UserId(row.try_get("id").map_err(get)?),
        username: row.try_get("username").map_err(get)?,
        username_key: row.try_get("username_key").map_err(get)?,
        password_hash: row.try_get("password_hash").map_err(get)?,
        roles: roles_from_json(row.try_get::<&str, _>("roles").map_err(get)?)?,
        disabled: row.try_get("disabled").map_err(get)?,
        credential_epoch: row.try_get("credential_epoch").map_err(get)?,
        roles_epoch: row.try_get("roles_epoch").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
    })
}

fn session_from_row(row: &PgRow) -> StoreResult<SessionRecord> {
    let get = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let key: Vec<u8> = row.try_get("key").map_err(get)?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| StoreError::Corrupt("session key length".into()))?;
    Ok(SessionRecord {
        key: SessionKey(key),
        user_id: UserId(row.try_get("user_id").map_err(get)?),
        credential_epoch: row.try_get("credential_epoch").map_err(get)?,
        roles_epoch: row.try_get("roles_epoch").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        last_seen: row.try_get("last_seen").map_err(get)?,
    })
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn create_user(&self, user: NewUser) -> StoreResult<UserRecord> {
        let now = now_millis();
        let row = sqlx::query(
            "INSERT INTO users (username, username_key, password_hash, roles, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, username, username_key, password_hash, roles, \
             disabled, credential_epoch, roles_epoch, created_at, updated_at",
        )
        .bind(&user.username)
        .bind(&user.username_key)
        .bind(&user.password_hash)
        .bind(roles_to_json(&user.roles))
        .bind(now)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        user_from_row(&row)
    }

    async fn user_by_key(&self, username_key: &str) -> StoreResult<Option<UserRecord>> {
        sqlx::query(
            "SELECT id, username, username_key, password_hash, roles, disabled, credential_epoch, \
             roles_epoch, created_at, updated_at FROM users WHERE username_key = $1",
        )
        .bind(username_key)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
        sqlx::query(
            "SELECT id, username, username_key, password_hash, roles, disabled, credential_epoch, \
             roles_epoch, created_at, updated_at FROM users WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        sqlx::query(
            "SELECT id, username, username_key, password_hash, roles, disabled, credential_epoch, \
             roles_epoch, created_at, updated_at FROM users ORDER BY username_key",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(user_from_row)
        .collect()
    }

    async fn count_users(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn each_password_hash(
        &self,
        each: &mut (dyn for<'h> FnMut(&'h str) + Send),
    ) -> StoreResult<()> {
        super::each_password_hash_in(&self.pool, each).await
    }

    async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: &str,
        end_sessions: bool,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE users SET password_hash = $1, updated_at = $2, \
             credential_epoch = credential_epoch + $3 WHERE id = $4",
        )
        .bind(password_hash)
        .bind(now_millis())
        .bind(i64::from(end_sessions))
        .bind(id.0)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_roles(&self, id: UserId, roles: &[String]) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE users SET roles = $1, updated_at = $2, roles_epoch = roles_epoch + 1 WHERE id = $3",
        )
        .bind(roles_to_json(roles))
        .bind(now_millis())
        .bind(id.0)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_disabled(&self, id: UserId, disabled: bool) -> StoreResult<bool> {
        let sql = if disabled {
            "UPDATE users SET credential_epoch = credential_epoch + (CASE WHEN disabled THEN 0 ELSE 1 END), disabled = TRUE, \
             updated_at = $1 WHERE id = $2"
        } else {
            "UPDATE users SET disabled = FALSE, updated_at = $1 WHERE id = $2"
        };
        self.update_user(sql, id, now_millis()).await
    }

    async fn remove_user(&self, id: UserId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// The statement that stores a new session (at login and at rotation).
fn insert_session(
    s: &SessionRecord,
) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(
        "INSERT INTO sessions (key, user_id, credential_epoch, roles_epoch, created_at, last_seen) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&s.key.0[..])
    .bind(s.user_id.0)
    .bind(s.credential_epoch)
    .bind(s.roles_epoch)
    .bind(s.created_at)
    .bind(s.last_seen)
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create(&self, s: &SessionRecord) -> StoreResult<()> {
        insert_session(s)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn load(&self, key: &SessionKey) -> StoreResult<Option<SessionRecord>> {
        sqlx::query(
            "SELECT key, user_id, credential_epoch, roles_epoch, created_at, last_seen \
             FROM sessions WHERE key = $1",
        )
        .bind(&key.0[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(session_from_row)
        .transpose()
    }

    async fn touch(&self, key: &SessionKey, last_seen: Millis) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE sessions SET last_seen = GREATEST(last_seen, $1) WHERE key = $2")
                .bind(last_seen)
                .bind(&key.0[..])
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    async fn rotate(&self, old: &SessionKey, new: &SessionRecord) -> StoreResult<bool> {
        let (pool, old, new) = (self.pool.clone(), *old, new.clone());
        detached(async move {
            let mut tx = pool.begin().await.map_err(unavailable)?;
            // Serialises with `delete_user_sessions`, which locks the same row:
            // under READ COMMITTED a revocation would otherwise miss the row this
            // transaction inserts.
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR SHARE")
                .bind(new.user_id.0)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            let deleted = sqlx::query("DELETE FROM sessions WHERE key = $1")
                .bind(&old.0[..])
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            if deleted.rows_affected() == 0 {
                tx.rollback().await.map_err(unavailable)?;
                return Ok(false);
            }
            insert_session(&new)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE key = $1")
            .bind(&key.0[..])
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_user_sessions(&self, user: UserId) -> StoreResult<u64> {
        let pool = self.pool.clone();
        detached(async move {
            let mut tx = pool.begin().await.map_err(unavailable)?;
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(user.0)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user.0)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            Ok(done.rows_affected())
        })
        .await
    }

    async fn list(&self, user: Option<UserId>) -> StoreResult<Vec<SessionRecord>> {
        sqlx::query(
            "SELECT key, user_id, credential_epoch, roles_epoch, created_at, last_seen FROM sessions \
             WHERE $1::BIGINT IS NULL OR user_id = $1 ORDER BY created_at, key",
        )
        .bind(user.map(|u| u.0))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(session_from_row)
        .collect()
    }

    async fn delete_expired(
        &self,
        idle_before: Millis,
        created_before: Millis,
    ) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE last_seen < $1 OR created_at < $2")
            .bind(idle_before)
            .bind(created_before)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn ping(&self) -> StoreResult<()> {
        UserStore::ping(self).await
    }
}

/// One statement, so concurrent attempts (also from other processes) are
/// all counted. Parameters: 1 key, 2 now, 3 max, 4 window, 5 this attempt's
/// nonce. SET expressions all see the row as it was before the update. An
/// attempt that is not counted (locked, or the limit reached by attempts
/// in flight) changes nothing, so it gets back another attempt's nonce.
const BEGIN_ATTEMPT_SQL: &str = "\
INSERT INTO login_failures AS f (key, count, window_start, locked_until, last_nonce) \
VALUES ($1, 1, $2, NULL, $5) \
ON CONFLICT (key) DO UPDATE SET \
  count = CASE WHEN f.locked_until > $2 THEN f.count \
               WHEN f.locked_until IS NULL AND $2 - f.window_start < $4 \
                 THEN CASE WHEN f.count < $3 THEN f.count + 1 ELSE f.count END \
               ELSE 1 END, \
  window_start = CASE WHEN f.locked_until > $2 THEN f.window_start \
               WHEN f.locked_until IS NULL AND $2 - f.window_start < $4 THEN f.window_start \
               ELSE $2 END, \
  locked_until = CASE WHEN f.locked_until > $2 THEN f.locked_until END, \
  last_nonce = CASE WHEN f.locked_until > $2 THEN f.last_nonce \
               WHEN f.locked_until IS NULL AND $2 - f.window_start < $4 AND f.count >= $3 \
                 THEN f.last_nonce \
               ELSE $5 END \
RETURNING f.last_nonce, f.locked_until";

/// Parameters: 1 key, 2 now, 3 max, 4 lockout.
const FAIL_SQL: &str = "UPDATE login_failures SET locked_until = \
    CASE WHEN locked_until > $2 THEN locked_until WHEN count >= $3 THEN $2 + $4 END \
    WHERE key = $1 RETURNING locked_until";

/// A counter with nothing counted and no lock says nothing: dropped, so
/// that attempts taken back (never checked: the hashing queue was full)
/// leave no row behind. Parameter: the key.
const DROP_EMPTY_SQL: &str =
    "DELETE FROM login_failures WHERE key = $1 AND count <= 0 AND locked_until IS NULL";

/// Parameters: 1 key, 2 max.
const FORGIVE_SQL: &str = "UPDATE login_failures SET count = GREATEST(count - 1, 0), \
    locked_until = CASE WHEN count - 1 < $2 THEN NULL ELSE locked_until END WHERE key = $1";

#[async_trait]
impl FailureStore for PostgresStore {
    async fn locked_until(&self, key: &str, now: Millis) -> StoreResult<Option<Millis>> {
        let until: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT locked_until FROM login_failures WHERE key = $1 AND locked_until > $2",
        )
        .bind(key)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(until.flatten())
    }

    async fn begin_attempt(
        &self,
        key: &str,
        now: Millis,
        policy: FailurePolicy,
    ) -> StoreResult<Attempt> {
        let nonce = super::attempt_nonce();
        let (last, until): (i64, Option<i64>) = sqlx::query_as(BEGIN_ATTEMPT_SQL)
            .bind(key)
            .bind(now)
            .bind(i64::from(policy.max_failures))
            .bind(policy.window)
            .bind(nonce)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(super::sql_attempt(last, nonce, until))
    }

    async fn fail(
        &self,
        key: &str,
        now: Millis,
        policy: FailurePolicy,
    ) -> StoreResult<Option<Millis>> {
        let until: Option<Option<i64>> = sqlx::query_scalar(FAIL_SQL)
            .bind(key)
            .bind(now)
            .bind(i64::from(policy.max_failures))
            .bind(policy.lockout)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(until.flatten())
    }

    async fn forgive(&self, key: &str, policy: FailurePolicy) -> StoreResult<()> {
        sqlx::query(FORGIVE_SQL)
            .bind(key)
            .bind(i64::from(policy.max_failures))
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        sqlx::query(DROP_EMPTY_SQL)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn clear(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn clear_prefix(&self, prefix: &str) -> StoreResult<u64> {
        // substr, not LIKE: a user name may hold LIKE's wildcards.
        let done = sqlx::query("DELETE FROM login_failures WHERE substr(key, 1, length($1)) = $1")
            .bind(prefix)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn delete_stale(&self, now: Millis, window: Millis) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM login_failures WHERE $1 - window_start >= $2 \
             AND (locked_until IS NULL OR locked_until <= $3)",
        )
        .bind(now)
        .bind(window)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected())
    }
}

/// The channel the migrations' triggers notify on.
const CHANNEL: &str = "latchkey_changes";

/// `LISTEN`s for the triggers' notifications: a deleted session (`s<hex key>`)
/// or a changed user (`u<id>`). While the listening connection is down the
/// feed is unhealthy and the cache is bypassed.
pub(crate) struct ListenFeed {
    url: String,
    /// The store's pool, for heartbeats: they take the path of every other
    /// change, from a connection of the pool through the server's
    /// notification queue to the listening connection.
    pool: PgPool,
}

impl ListenFeed {
    pub(crate) fn new(url: &str, store: &PostgresStore) -> Self {
        Self {
            url: url.to_owned(),
            pool: store.pool.clone(),
        }
    }

    /// A listener that reports a lost connection at once instead of
    /// reconnecting inside `try_recv` (which would keep the feed looking
    /// healthy while it waits for a stopped server).
    async fn listener(&self) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
        let options = PgConnectOptions::from_str(&self.url)?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(1))
            .connect_with(options)
            .await?;
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
        listener.eager_reconnect(false);
        Ok(listener)
    }
}

impl ChangeFeed for ListenFeed {
    fn source(&self) -> &'static str {
        "PostgreSQL"
    }

    fn send(self: Arc<Self>, message: String) -> Sending {
        Box::pin(async move {
            let sent = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(message)
                .execute(&self.pool)
                .await;
            if let Err(e) = sent {
                tracing::debug!(error = %e, "change feed heartbeat not sent");
            }
        })
    }

    fn start(self: Arc<Self>, sink: FeedSink) {
        super::feed::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.listener().await {
                    Ok(mut listener) => match listener.listen(CHANNEL).await {
                        Ok(()) => {
                            sink.set_healthy(true);
                            backoff = Duration::from_millis(100);
                            while let Ok(Some(n)) = listener.try_recv().await {
                                sink.received(n.payload());
                            }
                            sink.set_healthy(false);
                            tracing::warn!("lost the PostgreSQL change feed; reconnecting");
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot LISTEN for changes"),
                    },
                    Err(e) => tracing::debug!(error = %e, "change feed cannot connect"),
                }
                sink.set_healthy(false);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::feed::Change;

    #[test]
    fn notifications_name_what_changed() {
        let hex_key = "ab".repeat(32);
        assert_eq!(
            Change::parse(&format!("s{hex_key}")),
            Change::Session(SessionKey([0xab; 32]))
        );
        assert_eq!(Change::parse("u42"), Change::User(UserId(42)));
        assert_eq!(Change::parse("?"), Change::Everything);
    }
}
