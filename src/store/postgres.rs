//! PostgreSQL: users, sessions and counters shared by several instances.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::sql::{Sql, unavailable};
use super::{
    Attempt, FailurePolicy, FailureStore, Millis, NewUser, OpenError, SessionKey, SessionRecord,
    SessionStore, StoreError, StoreResult, UserId, UserRecord, UserStore, now_millis,
};

/// The statements this store shares with SQLite.
type Q = Sql<sqlx::Postgres>;

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
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn create_user(&self, user: NewUser) -> StoreResult<UserRecord> {
        Q::create_user(&self.pool, &user, now_millis()).await
    }

    async fn user_by_key(&self, username_key: &str) -> StoreResult<Option<UserRecord>> {
        Q::user_by_key(&self.pool, username_key).await
    }

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
        Q::user_by_id(&self.pool, id).await
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        Q::list_users(&self.pool).await
    }

    async fn count_users(&self) -> StoreResult<u64> {
        Q::count_users(&self.pool).await
    }

    async fn each_password_hash(
        &self,
        each: &mut (dyn for<'h> FnMut(&'h str) + Send),
    ) -> StoreResult<()> {
        Q::each_password_hash(&self.pool, each).await
    }

    async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: &str,
        end_sessions: bool,
    ) -> StoreResult<bool> {
        Q::set_password_hash(&self.pool, id, password_hash, end_sessions, now_millis()).await
    }

    async fn set_roles(&self, id: UserId, roles: &[String]) -> StoreResult<bool> {
        Q::set_roles(&self.pool, id, roles, now_millis()).await
    }

    async fn set_profile(
        &self,
        id: UserId,
        display_name: Option<&str>,
        email: Option<&str>,
    ) -> StoreResult<bool> {
        Q::set_profile(&self.pool, id, display_name, email, now_millis()).await
    }

    async fn set_disabled(&self, id: UserId, disabled: bool) -> StoreResult<bool> {
        Q::set_disabled(&self.pool, id, disabled, now_millis()).await
    }

    async fn remove_user(&self, id: UserId) -> StoreResult<bool> {
        Q::remove_user(&self.pool, id).await
    }

    async fn ping(&self) -> StoreResult<()> {
        Q::ping(&self.pool).await
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create(&self, s: &SessionRecord) -> StoreResult<()> {
        Q::insert_session(&self.pool, s).await
    }

    async fn load(&self, key: &SessionKey) -> StoreResult<Option<SessionRecord>> {
        Q::load_session(&self.pool, key).await
    }

    async fn touch(&self, key: &SessionKey, last_seen: Millis) -> StoreResult<bool> {
        Q::touch_session(&self.pool, key, last_seen).await
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
            if !Q::delete_session(&mut *tx, &old).await? {
                tx.rollback().await.map_err(unavailable)?;
                return Ok(false);
            }
            Q::insert_session(&mut *tx, &new).await?;
            tx.commit().await.map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
        Q::delete_session(&self.pool, key).await
    }

    async fn delete_user_sessions(&self, user: UserId) -> StoreResult<u64> {
        let pool = self.pool.clone();
        detached(async move {
            let mut tx = pool.begin().await.map_err(unavailable)?;
            // See `rotate`.
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(user.0)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            let deleted = Q::delete_user_sessions(&mut *tx, user).await?;
            tx.commit().await.map_err(unavailable)?;
            Ok(deleted)
        })
        .await
    }

    async fn list(&self, user: Option<UserId>) -> StoreResult<Vec<SessionRecord>> {
        Q::list_sessions(&self.pool, user).await
    }

    async fn delete_expired(
        &self,
        idle_before: Millis,
        created_before: Millis,
    ) -> StoreResult<u64> {
        Q::delete_expired(&self.pool, idle_before, created_before).await
    }

    async fn ping(&self) -> StoreResult<()> {
        Q::ping(&self.pool).await
    }
}

#[async_trait]
impl FailureStore for PostgresStore {
    async fn locked_until(&self, key: &str, now: Millis) -> StoreResult<Option<Millis>> {
        Q::locked_until(&self.pool, key, now).await
    }

    async fn begin_attempt(
        &self,
        key: &str,
        now: Millis,
        policy: FailurePolicy,
    ) -> StoreResult<Attempt> {
        Q::begin_attempt(&self.pool, key, now, policy).await
    }

    async fn fail(
        &self,
        key: &str,
        now: Millis,
        policy: FailurePolicy,
    ) -> StoreResult<Option<Millis>> {
        Q::fail(&self.pool, key, now, policy).await
    }

    async fn forgive(&self, key: &str, policy: FailurePolicy) -> StoreResult<()> {
        Q::forgive(&self.pool, key, policy).await?;
        Q::drop_empty(&self.pool, key).await
    }

    async fn clear(&self, key: &str) -> StoreResult<()> {
        Q::clear_failures(&self.pool, key).await
    }

    async fn clear_prefix(&self, prefix: &str) -> StoreResult<u64> {
        Q::clear_failures_prefix(&self.pool, prefix).await
    }

    async fn delete_stale(&self, now: Millis, window: Millis) -> StoreResult<u64> {
        Q::delete_stale_failures(&self.pool, now, window).await
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
