//! The default store: one SQLite file in WAL mode, shared safely with the CLI
//! running in another process.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions as _, Connection as _};

use super::{
    Attempt, FailurePolicy, FailureStore, Millis, NewUser, OpenError, SessionKey, SessionRecord,
    SessionStore, StoreError, StoreResult, UserId, UserRecord, UserStore, now_millis,
    roles_from_json, roles_to_json, sqlite_path,
};

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use notify::Watcher as _;

use super::feed::{Change, ChangeFeed, FeedSink, Sending};

/// How long a write waits for the database: for another process's lock
/// (the CLI), and for this process's other writes.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Users, sessions and counters in one SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads.
    pool: SqlitePool,
    /// Every write: SQLite takes one writer at a time anyway, and a connection
    /// held here skips the pool's check on release, a round trip to the
    /// connection's thread after every statement.
    writer: Arc<tokio::sync::Mutex<SqliteConnection>>,
    path: Option<PathBuf>,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::unavailable(e),
    }
}

impl SqliteStore {
    /// Opens the database named by a `sqlite://PATH` URL, creating and
    /// migrating it if needed.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(OpenError::connect)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // The CLI and the server write to the same file; wait for each other.
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            // A connection to a local file cannot go stale; the check before
            // every acquire would cost a round trip to its worker thread.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(OpenError::connect)?;
        MIGRATOR.run(&pool).await.map_err(OpenError::migrate)?;
        let writer = options.connect().await.map_err(OpenError::connect)?;
        let path = sqlite_path(url);
        Ok(Self {
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            path,
        })
    }

    /// Watches the database files, so that what another process (the CLI, a
    /// second server, someone with the `sqlite3` shell) deletes or changes
    /// leaves this process's session cache.
    #[must_use]
    pub fn change_feed(&self) -> Option<Arc<dyn ChangeFeed>> {
        let path = self.path.as_ref()?;
        let path = std::path::absolute(path).ok()?;
        Some(Arc::new(FileFeed {
            dir: path.parent()?.to_path_buf(),
            name: path.file_name()?.to_string_lossy().into_owned(),
            watcher: Mutex::new(None),
            // A connection of its own: with the readers' pool busy serving
            // requests, the feed would wait its turn while it looks healthy.
            pool: sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .connect_lazy_with((*self.pool.connect_options()).clone()),
            wake: Arc::new(tokio::sync::Notify::new()),
            beat: Arc::default(),
        }))
    }

    /// The write connection, waited for no longer than SQLite itself waits
    /// for another process's lock: a queue of writes behind a database locked
    /// for minutes fails each request in bounded time instead of in turn.
    async fn writer(&self) -> StoreResult<tokio::sync::MutexGuard<'_, SqliteConnection>> {
        tokio::time::timeout(BUSY_TIMEOUT, self.writer.lock())
            .await
            .map_err(StoreError::unavailable)
    }

    async fn update_user(&self, sql: &'static str, id: UserId, now: Millis) -> StoreResult<bool> {
        let done = sqlx::query(sql)
            .bind(now)
            .bind(id.0)
            .execute(&mut *self.writer().await?)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }
}

fn user_from_row(row: &SqliteRow) -> StoreResult<UserRecord> {
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

fn session_from_row(row: &SqliteRow) -> StoreResult<SessionRecord> {
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
impl UserStore for SqliteStore {
    async fn create_user(&self, user: NewUser) -> StoreResult<UserRecord> {
        let now = now_millis();
        let row = sqlx::query(
            "INSERT INTO users (username, username_key, password_hash, roles, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id, username, username_key, password_hash, roles, \
             disabled, credential_epoch, roles_epoch, created_at, updated_at",
        )
        .bind(&user.username)
        .bind(&user.username_key)
        .bind(&user.password_hash)
        .bind(roles_to_json(&user.roles))
        .bind(now)
        .bind(now)
        .fetch_one(&mut *self.writer().await?)
        .await
        .map_err(unavailable)?;
        user_from_row(&row)
    }

    async fn user_by_key(&self, username_key: &str) -> StoreResult<Option<UserRecord>> {
        sqlx::query(
            "SELECT id, username, username_key, password_hash, roles, disabled, credential_epoch, \
             roles_epoch, created_at, updated_at FROM users WHERE username_key = ?",
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
             roles_epoch, created_at, updated_at FROM users WHERE id = ?",
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
            "UPDATE users SET password_hash = ?, updated_at = ?, \
             credential_epoch = credential_epoch + ? WHERE id = ?",
        )
        .bind(password_hash)
        .bind(now_millis())
        .bind(i64::from(end_sessions))
        .bind(id.0)
        .execute(&mut *self.writer().await?)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_roles(&self, id: UserId, roles: &[String]) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE users SET roles = ?, updated_at = ?, roles_epoch = roles_epoch + 1 WHERE id = ?",
        )
        .bind(roles_to_json(roles))
        .bind(now_millis())
        .bind(id.0)
        .execute(&mut *self.writer().await?)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_disabled(&self, id: UserId, disabled: bool) -> StoreResult<bool> {
        let sql = if disabled {
            "UPDATE users SET credential_epoch = credential_epoch + (1 - disabled), disabled = 1, \
             updated_at = ? WHERE id = ?"
        } else {
            "UPDATE users SET disabled = 0, updated_at = ? WHERE id = ?"
        };
        self.update_user(sql, id, now_millis()).await
    }

    async fn remove_user(&self, id: UserId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id.0)
            .execute(&mut *self.writer().await?)
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
) -> sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    sqlx::query(
        "INSERT INTO sessions (key, user_id, credential_epoch, roles_epoch, created_at, last_seen) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&s.key.0[..])
    .bind(s.user_id.0)
    .bind(s.credential_epoch)
    .bind(s.roles_epoch)
    .bind(s.created_at)
    .bind(s.last_seen)
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create(&self, s: &SessionRecord) -> StoreResult<()> {
        insert_session(s)
            .execute(&mut *self.writer().await?)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn load(&self, key: &SessionKey) -> StoreResult<Option<SessionRecord>> {
        sqlx::query(
            "SELECT key, user_id, credential_epoch, roles_epoch, created_at, last_seen \
             FROM sessions WHERE key = ?",
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
        let done = sqlx::query("UPDATE sessions SET last_seen = MAX(last_seen, ?) WHERE key = ?")
            .bind(last_seen)
            .bind(&key.0[..])
            .execute(&mut *self.writer().await?)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    async fn rotate(&self, old: &SessionKey, new: &SessionRecord) -> StoreResult<bool> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.map_err(unavailable)?;
        let deleted = sqlx::query("DELETE FROM sessions WHERE key = ?")
            .bind(&old.0[..])
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if deleted.rows_affected() == 0 {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(false);
        }
        insert_session(new)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE key = ?")
            .bind(&key.0[..])
            .execute(&mut *self.writer().await?)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_user_sessions(&self, user: UserId) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = ?")
            .bind(user.0)
            .execute(&mut *self.writer().await?)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn list(&self, user: Option<UserId>) -> StoreResult<Vec<SessionRecord>> {
        sqlx::query(
            "SELECT key, user_id, credential_epoch, roles_epoch, created_at, last_seen FROM sessions \
             WHERE ?1 IS NULL OR user_id = ?1 ORDER BY created_at, key",
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
        let mut writer = self.writer().await?;
        let done = sqlx::query("DELETE FROM sessions WHERE last_seen < ? OR created_at < ?")
            .bind(idle_before)
            .bind(created_before)
            .execute(&mut *writer)
            .await
            .map_err(unavailable)?;
        sqlx::query("DELETE FROM changes WHERE seq <= (SELECT max(seq) FROM changes) - ?")
            .bind(CHANGES_KEPT)
            .execute(&mut *writer)
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
INSERT INTO login_failures (key, count, window_start, locked_until, last_nonce) \
VALUES (?1, 1, ?2, NULL, ?5) \
ON CONFLICT (key) DO UPDATE SET \
  count = CASE WHEN locked_until > ?2 THEN count \
               WHEN locked_until IS NULL AND ?2 - window_start < ?4 \
                 THEN CASE WHEN count < ?3 THEN count + 1 ELSE count END \
               ELSE 1 END, \
  window_start = CASE WHEN locked_until > ?2 THEN window_start \
               WHEN locked_until IS NULL AND ?2 - window_start < ?4 THEN window_start \
               ELSE ?2 END, \
  locked_until = CASE WHEN locked_until > ?2 THEN locked_until END, \
  last_nonce = CASE WHEN locked_until > ?2 THEN last_nonce \
               WHEN locked_until IS NULL AND ?2 - window_start < ?4 AND count >= ?3 \
                 THEN last_nonce \
               ELSE ?5 END \
RETURNING last_nonce, locked_until";

/// Parameters: 1 key, 2 now, 3 max, 4 lockout.
const FAIL_SQL: &str = "UPDATE login_failures SET locked_until = \
    CASE WHEN locked_until > ?2 THEN locked_until WHEN count >= ?3 THEN ?2 + ?4 END \
    WHERE key = ?1 RETURNING locked_until";

/// A counter with nothing counted and no lock says nothing: dropped, so
/// that attempts taken back (never checked: the hashing queue was full)
/// leave no row behind. Parameter: the key.
const DROP_EMPTY_SQL: &str =
    "DELETE FROM login_failures WHERE key = ? AND count <= 0 AND locked_until IS NULL";

/// Parameters: 1 key, 2 max.
const FORGIVE_SQL: &str = "UPDATE login_failures SET count = MAX(count - 1, 0), \
    locked_until = CASE WHEN count - 1 < ?2 THEN NULL ELSE locked_until END WHERE key = ?1";

#[async_trait]
impl FailureStore for SqliteStore {
    async fn locked_until(&self, key: &str, now: Millis) -> StoreResult<Option<Millis>> {
        let until: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT locked_until FROM login_failures WHERE key = ? AND locked_until > ?",
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
            .fetch_one(&mut *self.writer().await?)
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
            .fetch_optional(&mut *self.writer().await?)
            .await
            .map_err(unavailable)?;
        Ok(until.flatten())
    }

    async fn forgive(&self, key: &str, policy: FailurePolicy) -> StoreResult<()> {
        let mut writer = self.writer().await?;
        sqlx::query(FORGIVE_SQL)
            .bind(key)
            .bind(i64::from(policy.max_failures))
            .execute(&mut *writer)
            .await
            .map_err(unavailable)?;
        sqlx::query(DROP_EMPTY_SQL)
            .bind(key)
            .execute(&mut *writer)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn clear(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_failures WHERE key = ?")
            .bind(key)
            .execute(&mut *self.writer().await?)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn clear_prefix(&self, prefix: &str) -> StoreResult<u64> {
        // substr, not LIKE: a user name may hold LIKE's wildcards.
        let done = sqlx::query("DELETE FROM login_failures WHERE substr(key, 1, length(?1)) = ?1")
            .bind(prefix)
            .execute(&mut *self.writer().await?)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn delete_stale(&self, now: Millis, window: Millis) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM login_failures WHERE ? - window_start >= ? \
             AND (locked_until IS NULL OR locked_until <= ?)",
        )
        .bind(now)
        .bind(window)
        .bind(now)
        .execute(&mut *self.writer().await?)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected())
    }
}

/// Watches the database's files; when they change, reads the `changes`
/// rows that other writers' triggers added (see the migration
/// `0003_changes.sql`) and reports each. inotify (or the platform's
/// equivalent) delivers events on the watcher's own thread, independent of
/// the async runtime, within microseconds of the other process's `write()`.
struct FileFeed {
    dir: PathBuf,
    name: String,
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
    pool: SqlitePool,
    wake: Arc<tokio::sync::Notify>,
    /// The last heartbeat the watcher saw, reported once the changes table
    /// has been read after it.
    beat: Arc<Mutex<Option<String>>>,
}

/// How often the `changes` table is read even without a file event: a
/// safety net (see [`FileFeed::follow`]).
const CHANGES_POLL: Duration = Duration::from_millis(250);

/// After a file event, the table is read at once and again at these delays
/// after it: the `write()` that made the event comes before the writer
/// updates the WAL index in shared memory, which makes no event, and a busy
/// machine may pause the writer in between for a few milliseconds. The
/// reads are dense early, where the revocation window is decided, and each
/// costs a few microseconds.
const CHANGES_REREAD: [Duration; 10] = [
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(3),
    Duration::from_millis(5),
    Duration::from_millis(8),
    Duration::from_millis(12),
    Duration::from_millis(16),
    Duration::from_millis(24),
    Duration::from_millis(32),
    Duration::from_millis(64),
];

/// Rows kept in `changes`; an instance that falls further behind (it would
/// have to miss this many changes between two reads) empties its cache.
const CHANGES_KEPT: i64 = 100_000;

impl FileFeed {
    /// Reads the changes after `last`, reports them, and returns the new
    /// last sequence number. A gap (rows pruned before this instance read
    /// them) reports everything.
    async fn read_since(&self, last: i64, sink: &FeedSink) -> Result<i64, sqlx::Error> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, payload FROM changes WHERE seq > ? ORDER BY seq")
                .bind(last)
                .fetch_all(&self.pool)
                .await?;
        if rows.first().is_some_and(|(seq, _)| *seq > last + 1) {
            sink.changed(Change::Everything);
        }
        for (_, payload) in &rows {
            sink.received(payload);
        }
        Ok(rows.last().map_or(last, |(seq, _)| *seq))
    }

    /// Follows the `changes` table: read at every file event, again
    /// [`CHANGES_REREAD`] after it, and every [`CHANGES_POLL`] regardless.
    async fn follow(self: Arc<Self>, sink: FeedSink) {
        let mut last = loop {
            match sqlx::query_scalar::<_, Option<i64>>("SELECT max(seq) FROM changes")
                .fetch_one(&self.pool)
                .await
            {
                Ok(max) => break max.unwrap_or(0),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the changes table");
                    tokio::time::sleep(CHANGES_POLL).await;
                }
            }
        };
        // Reads due again shortly after a file event (see above); a new
        // event is read at once, whatever is pending.
        let mut followups: Vec<tokio::time::Instant> = Vec::new();
        loop {
            let now = tokio::time::Instant::now();
            let next = followups
                .iter()
                .copied()
                .min()
                .unwrap_or(now + CHANGES_POLL);
            tokio::select! {
                () = self.wake.notified() => {
                    let now = tokio::time::Instant::now();
                    followups.extend(CHANGES_REREAD.map(|after| now + after));
                }
                () = tokio::time::sleep_until(next) => {}
            }
            let now = tokio::time::Instant::now();
            followups.retain(|due| *due > now);
            match self.read_since(last, &sink).await {
                Ok(seq) => {
                    last = seq;
                    // Alive only once the table has been read after it.
                    let beat = self
                        .beat
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take();
                    if let Some(text) = beat {
                        sink.heartbeat_received(&text);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the changes table");
                    sink.changed(Change::Everything);
                }
            }
        }
    }

    /// The file every instance on this database touches as its heartbeat.
    /// Its name does not start with the database's, so writing it is not a
    /// change; its content is the last heartbeat written.
    fn heartbeat_file(&self) -> String {
        format!(".{}.alive", self.name)
    }
}

impl ChangeFeed for FileFeed {
    fn source(&self) -> &'static str {
        "the database file"
    }

    fn send(self: Arc<Self>, message: String) -> Sending {
        Box::pin(async move {
            let path = self.dir.join(self.heartbeat_file());
            if let Err(e) = tokio::fs::write(&path, message).await {
                tracing::debug!(error = %e, "change feed heartbeat not written");
            }
        })
    }

    fn start(self: Arc<Self>, sink: FeedSink) {
        let name = self.name.clone();
        let heartbeat_file = self.dir.join(self.heartbeat_file());
        let events = sink.clone();
        let wake = self.wake.clone();
        let beats = self.beat.clone();
        let handler = move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                if event.paths.contains(&heartbeat_file) {
                    // Written by any instance on this database (they share
                    // the file): what matters is that the watcher delivers,
                    // and that the changes table is read (the heartbeat is
                    // reported after the next read, see `follow`).
                    if matches!(event.kind, notify::EventKind::Modify(_))
                        && let Ok(text) = std::fs::read_to_string(&heartbeat_file)
                    {
                        *beats
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(text);
                        wake.notify_one();
                    }
                    return;
                }
                let ours = event.paths.iter().any(|p| {
                    p.file_name()
                        .is_some_and(|f| f.to_string_lossy().starts_with(&name))
                });
                let writes = matches!(
                    event.kind,
                    notify::EventKind::Modify(_)
                        | notify::EventKind::Create(_)
                        | notify::EventKind::Remove(_)
                        | notify::EventKind::Any
                        | notify::EventKind::Other
                );
                if ours && writes {
                    wake.notify_one();
                }
                // A database file created or removed is another database.
                let replaced = matches!(
                    event.kind,
                    notify::EventKind::Create(_) | notify::EventKind::Remove(_)
                );
                if ours && replaced {
                    events.changed(Change::Everything);
                }
                // A queue overflow (or any event that names no file) may hide a
                // write: assume the worst.
                if event.paths.is_empty() || event.need_rescan() {
                    events.changed(Change::Everything);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "database file watcher failed; session cache disabled");
                events.set_healthy(false);
            }
        };
        let started = notify::recommended_watcher(handler).and_then(|mut w| {
            w.watch(&self.dir, notify::RecursiveMode::NonRecursive)?;
            Ok(w)
        });
        match started {
            Ok(watcher) => {
                *self
                    .watcher
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(watcher);
                sink.set_healthy(true);
                super::feed::spawn(self.clone().follow(sink));
            }
            Err(e) => tracing::warn!(error = %e, dir = %self.dir.display(),
                "cannot watch the database directory; every request will read the database"),
        }
    }
}
