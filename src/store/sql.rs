//! The SQL that the SQLite and PostgreSQL stores share: every statement
//! that both databases run alike is written once, here, with `$N`
//! placeholders (SQLite takes them too) and rows mapped by `FromRow`. The
//! stores keep only what really differs: how they connect and migrate,
//! SQLite's single writer connection, PostgreSQL's detached transactions
//! and row locks, and each one's change feed.
//!
//! Each function takes the executor to run on (a pool, a connection or a
//! transaction), so that a store chooses where each statement goes.

use std::marker::PhantomData;

use sqlx::{Database, Decode, Encode, Executor, FromRow, Type};

use super::{
    Attempt, FailurePolicy, Millis, NewUser, SessionKey, SessionRecord, StoreError, StoreResult,
    UserId, UserRecord,
};

/// A database error as a store error: a unique-key violation is a conflict
/// (a name or key already taken), anything else an unavailable store.
pub(crate) fn unavailable(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::unavailable(e),
    }
}

/// Roles as stored in text columns: a JSON array.
pub(crate) fn roles_to_json(roles: &[String]) -> String {
    serde_json::to_string(roles).unwrap_or_else(|_| "[]".to_owned())
}

/// Parses the JSON array written by [`roles_to_json`].
pub(crate) fn roles_from_json(text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("roles: {e}")))
}

/// A row of `users`, as both databases return it.
#[derive(FromRow)]
pub(crate) struct UserRow {
    id: i64,
    username: String,
    username_key: String,
    password_hash: String,
    roles: String,
    display_name: Option<String>,
    email: Option<String>,
    disabled: bool,
    credential_epoch: i64,
    roles_epoch: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<UserRow> for UserRecord {
    type Error = StoreError;

    fn try_from(row: UserRow) -> StoreResult<Self> {
        Ok(Self {
            id: UserId(row.id),
            username: row.username,
            username_key: row.username_key,
            password_hash: row.password_hash,
            roles: roles_from_json(&row.roles)?,
            display_name: row.display_name,
            email: row.email,
            disabled: row.disabled,
            credential_epoch: row.credential_epoch,
            roles_epoch: row.roles_epoch,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A row of `sessions`, as both databases return it.
#[derive(FromRow)]
pub(crate) struct SessionRow {
    key: Vec<u8>,
    user_id: i64,
    credential_epoch: i64,
    roles_epoch: i64,
    created_at: i64,
    last_seen: i64,
}

impl TryFrom<SessionRow> for SessionRecord {
    type Error = StoreError;

    fn try_from(row: SessionRow) -> StoreResult<Self> {
        let key: [u8; 32] = row
            .key
            .try_into()
            .map_err(|_| StoreError::Corrupt("session key length".into()))?;
        Ok(Self {
            key: SessionKey(key),
            user_id: UserId(row.user_id),
            credential_epoch: row.credential_epoch,
            roles_epoch: row.roles_epoch,
            created_at: row.created_at,
            last_seen: row.last_seen,
        })
    }
}

/// The columns of [`UserRow`], for `concat!` (a `format!` would cost an
/// allocation per query).
macro_rules! user_columns {
    () => {
        "id, username, username_key, password_hash, roles, display_name, email, disabled, \
         credential_epoch, roles_epoch, created_at, updated_at"
    };
}

/// The columns of [`SessionRow`].
macro_rules! session_columns {
    () => {
        "key, user_id, credential_epoch, roles_epoch, created_at, last_seen"
    };
}

/// One statement, so concurrent attempts (also from other processes) are
/// all counted. Parameters: 1 key, 2 now, 3 max, 4 window, 5 this attempt's
/// nonce. SET expressions all see the row as it was before the update. An
/// attempt that is not counted (locked, or the limit reached by attempts
/// in flight) changes nothing, so it gets back another attempt's nonce.
/// The row is named `f` because PostgreSQL finds a bare column name
/// ambiguous next to `excluded`.
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
RETURNING last_nonce, locked_until";

/// Parameters: 1 key, 2 now, 3 max, 4 lockout.
const FAIL_SQL: &str = "UPDATE login_failures SET locked_until = \
    CASE WHEN locked_until > $2 THEN locked_until WHEN count >= $3 THEN $2 + $4 END \
    WHERE key = $1 RETURNING locked_until";

/// Parameters: 1 key, 2 max. (`CASE`, not `MAX` or `GREATEST`: SQLite
/// has only the first, PostgreSQL only the second.)
const FORGIVE_SQL: &str = "UPDATE login_failures \
    SET count = CASE WHEN count > 1 THEN count - 1 ELSE 0 END, \
    locked_until = CASE WHEN count - 1 < $2 THEN NULL ELSE locked_until END WHERE key = $1";

/// A counter with nothing counted and no lock says nothing: dropped, so
/// that attempts taken back (never checked: the hashing queue was full)
/// leave no row behind. Parameter: the key.
const DROP_EMPTY_SQL: &str =
    "DELETE FROM login_failures WHERE key = $1 AND count <= 0 AND locked_until IS NULL";

/// The shared statements, for a database `DB` whose driver can run them;
/// used as `Sql::<Sqlite>::load(&pool, &key)`.
pub(crate) struct Sql<DB>(PhantomData<DB>);

impl<DB> Sql<DB>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> UserRow: FromRow<'r, DB::Row>,
    for<'r> SessionRow: FromRow<'r, DB::Row>,
    for<'r> i64: Encode<'r, DB> + Decode<'r, DB> + Type<DB>,
    for<'r> Option<i64>: Encode<'r, DB>,
    for<'r> String: Encode<'r, DB> + Decode<'r, DB> + Type<DB>,
    for<'r> &'r str: Encode<'r, DB> + Type<DB>,
    for<'r> Option<&'r str>: Encode<'r, DB>,
    for<'r> &'r [u8]: Encode<'r, DB> + Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    DB::QueryResult: RowsAffected,
{
    /// Runs a statement; how many rows it changed.
    async fn changed<'c>(
        ex: impl Executor<'c, Database = DB>,
        statement: sqlx::query::Query<'static, DB, DB::Arguments>,
    ) -> StoreResult<u64> {
        Ok(statement
            .execute(ex)
            .await
            .map_err(unavailable)?
            .rows_affected())
    }

    pub(crate) async fn create_user<'c>(
        ex: impl Executor<'c, Database = DB>,
        user: &NewUser,
        now: Millis,
    ) -> StoreResult<UserRecord> {
        sqlx::query_as::<DB, UserRow>(concat!(
            "INSERT INTO users (username, username_key, password_hash, roles, created_at, \
             updated_at, display_name, email) VALUES ($1, $2, $3, $4, $5, $5, $6, $7) \
             RETURNING ",
            user_columns!()
        ))
        .bind(user.username.as_str())
        .bind(user.username_key.as_str())
        .bind(user.password_hash.as_str())
        .bind(roles_to_json(&user.roles))
        .bind(now)
        .bind(user.display_name.as_deref())
        .bind(user.email.as_deref())
        .fetch_one(ex)
        .await
        .map_err(unavailable)?
        .try_into()
    }

    pub(crate) async fn user_by_key<'c>(
        ex: impl Executor<'c, Database = DB>,
        username_key: &str,
    ) -> StoreResult<Option<UserRecord>> {
        sqlx::query_as::<DB, UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username_key = $1"
        ))
        .bind(username_key)
        .fetch_optional(ex)
        .await
        .map_err(unavailable)?
        .map(UserRecord::try_from)
        .transpose()
    }

    pub(crate) async fn user_by_id<'c>(
        ex: impl Executor<'c, Database = DB>,
        id: UserId,
    ) -> StoreResult<Option<UserRecord>> {
        sqlx::query_as::<DB, UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(ex)
        .await
        .map_err(unavailable)?
        .map(UserRecord::try_from)
        .transpose()
    }

    pub(crate) async fn list_users<'c>(
        ex: impl Executor<'c, Database = DB>,
    ) -> StoreResult<Vec<UserRecord>> {
        sqlx::query_as::<DB, UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY username_key"
        ))
        .fetch_all(ex)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(UserRecord::try_from)
        .collect()
    }

    pub(crate) async fn count_users<'c>(ex: impl Executor<'c, Database = DB>) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar::<DB, i64>("SELECT COUNT(*) FROM users")
            .fetch_one(ex)
            .await
            .map_err(unavailable)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// [`super::UserStore::each_password_hash`]: the rows are streamed, one
    /// at a time.
    pub(crate) async fn each_password_hash<'c>(
        ex: impl Executor<'c, Database = DB>,
        each: &mut (dyn for<'h> FnMut(&'h str) + Send),
    ) -> StoreResult<()> {
        use futures_util::TryStreamExt as _;
        let mut rows =
            sqlx::query_scalar::<DB, String>("SELECT password_hash FROM users").fetch(ex);
        while let Some(hash) = rows.try_next().await.map_err(unavailable)? {
            each(&hash);
        }
        Ok(())
    }

    pub(crate) async fn set_password_hash<'c>(
        ex: impl Executor<'c, Database = DB>,
        id: UserId,
        password_hash: &str,
        end_sessions: bool,
        now: Millis,
    ) -> StoreResult<bool> {
        Self::changed(
            ex,
            sqlx::query::<DB>(
                "UPDATE users SET password_hash = $1, updated_at = $2, \
             credential_epoch = credential_epoch + $3 WHERE id = $4",
            )
            .bind(password_hash)
            .bind(now)
            .bind(i64::from(end_sessions))
            .bind(id.0),
        )
        .await
        .map(|n| n > 0)
    }

    pub(crate) async fn set_roles<'c>(
        ex: impl Executor<'c, Database = DB>,
        id: UserId,
        roles: &[String],
        now: Millis,
    ) -> StoreResult<bool> {
        Self::changed(
            ex,
            sqlx::query::<DB>(
                "UPDATE users SET roles = $1, updated_at = $2, roles_epoch = roles_epoch + 1 \
             WHERE id = $3",
            )
            .bind(roles_to_json(roles))
            .bind(now)
            .bind(id.0),
        )
        .await
        .map(|n| n > 0)
    }

    pub(crate) async fn set_profile<'c>(
        ex: impl Executor<'c, Database = DB>,
        id: UserId,
        display_name: Option<&str>,
        email: Option<&str>,
        now: Millis,
    ) -> StoreResult<bool> {
        Self::changed(
            ex,
            sqlx::query::<DB>(
                "UPDATE users SET display_name = $1, email = $2, updated_at = $3 WHERE id = $4",
            )
            .bind(display_name)
            .bind(email)
            .bind(now)
            .bind(id.0),
        )
        .await
        .map(|n| n > 0)
    }

    /// Disabling ends the user's sessions (a new credential epoch), once:
    /// disabling a disabled user changes nothing.
    pub(crate) async fn set_disabled<'c>(
        ex: impl Executor<'c, Database = DB>,
        id: UserId,
        disabled: bool,
        now: Millis,
    ) -> StoreResult<bool> {
        let sql = if disabled {
            "UPDATE users SET credential_epoch = credential_epoch + \
             (CASE WHEN disabled THEN 0 ELSE 1 END), disabled = TRUE, updated_at = $1 \
             WHERE id = $2"
        } else {
            "UPDATE users SET disabled = FALSE, updated_at = $1 WHERE id = $2"
        };
        Self::changed(ex, sqlx::query::<DB>(sql).bind(now).bind(id.0))
            .await
            .map(|n| n > 0)
    }

    pub(crate) async fn remove_user<'c>(
        ex: impl Executor<'c, Database = DB>,
        id: UserId,
    ) -> StoreResult<bool> {
        Self::changed(
            ex,
            sqlx::query::<DB>("DELETE FROM users WHERE id = $1").bind(id.0),
        )
        .await
        .map(|n| n > 0)
    }

    pub(crate) async fn ping<'c>(ex: impl Executor<'c, Database = DB>) -> StoreResult<()> {
        Self::changed(ex, sqlx::query::<DB>("SELECT 1")).await?;
        Ok(())
    }

    /// Stores a new session (at login and at rotation).
    pub(crate) async fn insert_session<'c>(
        ex: impl Executor<'c, Database = DB>,
        s: &SessionRecord,
    ) -> StoreResult<()> {
        Self::changed(
            ex,
            sqlx::query::<DB>(
                "INSERT INTO sessions (key, user_id, credential_epoch, roles_epoch, created_at, \
             last_seen) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&s.key.0[..])
            .bind(s.user_id.0)
            .bind(s.credential_epoch)
            .bind(s.roles_epoch)
            .bind(s.created_at)
            .bind(s.last_seen),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn load_session<'c>(
        ex: impl Executor<'c, Database = DB>,
        key: &SessionKey,
    ) -> StoreResult<Option<SessionRecord>> {
        sqlx::query_as::<DB, SessionRow>(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE key = $1"
        ))
        .bind(&key.0[..])
        .fetch_optional(ex)
        .await
        .map_err(unavailable)?
        .map(SessionRecord::try_from)
        .transpose()
    }

    /// Records activity; never moves it back (another instance may have
    /// written a later time).
    pub(crate) async fn touch_session<'c>(
        ex: impl Executor<'c, Database = DB>,
        key: &SessionKey,
        last_seen: Millis,
    ) -> StoreResult<bool> {
        Self::changed(ex, sqlx::query::<DB>(
            "UPDATE sessions SET last_seen = CASE WHEN last_seen < $1 THEN $1 ELSE last_seen END \
             WHERE key = $2",
        )
        .bind(last_seen)
        .bind(&key.0[..]))
            .await.map(|n| n > 0)
    }

    pub(crate) async fn delete_session<'c>(
        ex: impl Executor<'c, Database = DB>,
        key: &SessionKey,
    ) -> StoreResult<bool> {
        Self::changed(
            ex,
            sqlx::query::<DB>("DELETE FROM sessions WHERE key = $1").bind(&key.0[..]),
        )
        .await
        .map(|n| n > 0)
    }

    pub(crate) async fn delete_user_sessions<'c>(
        ex: impl Executor<'c, Database = DB>,
        user: UserId,
    ) -> StoreResult<u64> {
        Self::changed(
            ex,
            sqlx::query::<DB>("DELETE FROM sessions WHERE user_id = $1").bind(user.0),
        )
        .await
    }

    /// Sessions, of one user or of everyone. (`CAST`: PostgreSQL must
    /// know the parameter's type before it sees it compared.)
    pub(crate) async fn list_sessions<'c>(
        ex: impl Executor<'c, Database = DB>,
        user: Option<UserId>,
    ) -> StoreResult<Vec<SessionRecord>> {
        sqlx::query_as::<DB, SessionRow>(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions \
             WHERE CAST($1 AS BIGINT) IS NULL OR user_id = $1 ORDER BY created_at, key"
        ))
        .bind(user.map(|u| u.0))
        .fetch_all(ex)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(SessionRecord::try_from)
        .collect()
    }

    pub(crate) async fn delete_expired<'c>(
        ex: impl Executor<'c, Database = DB>,
        idle_before: Millis,
        created_before: Millis,
    ) -> StoreResult<u64> {
        let done =
            sqlx::query::<DB>("DELETE FROM sessions WHERE last_seen < $1 OR created_at < $2")
                .bind(idle_before)
                .bind(created_before)
                .execute(ex)
                .await
                .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn locked_until<'c>(
        ex: impl Executor<'c, Database = DB>,
        key: &str,
        now: Millis,
    ) -> StoreResult<Option<Millis>> {
        let until: Option<Option<i64>> = sqlx::query_scalar::<DB, Option<i64>>(
            "SELECT locked_until FROM login_failures WHERE key = $1 AND locked_until > $2",
        )
        .bind(key)
        .bind(now)
        .fetch_optional(ex)
        .await
        .map_err(unavailable)?;
        Ok(until.flatten())
    }

    pub(crate) async fn begin_attempt<'c>(
        ex: impl Executor<'c, Database = DB>,
        key: &str,
        now: Millis,
        policy: FailurePolicy,
    ) -> StoreResult<Attempt> {
        let nonce = attempt_nonce();
        let (last, until): (i64, Option<i64>) =
            sqlx::query_as::<DB, (i64, Option<i64>)>(BEGIN_ATTEMPT_SQL)
                .bind(key)
                .bind(now)
                .bind(i64::from(policy.max_failures))
                .bind(policy.window)
                .bind(nonce)
                .fetch_one(ex)
                .await
                .map_err(unavailable)?;
        Ok(decided(last, nonce, until))
    }

    pub(crate) async fn fail<'c>(
        ex: impl Executor<'c, Database = DB>,
        key: &str,
        now: Millis,
        policy: FailurePolicy,
    ) -> StoreResult<Option<Millis>> {
        let until: Option<Option<i64>> = sqlx::query_scalar::<DB, Option<i64>>(FAIL_SQL)
            .bind(key)
            .bind(now)
            .bind(i64::from(policy.max_failures))
            .bind(policy.lockout)
            .fetch_optional(ex)
            .await
            .map_err(unavailable)?;
        Ok(until.flatten())
    }

    /// Takes back one counted attempt; follow with [`Self::drop_empty`].
    pub(crate) async fn forgive<'c>(
        ex: impl Executor<'c, Database = DB>,
        key: &str,
        policy: FailurePolicy,
    ) -> StoreResult<()> {
        Self::changed(
            ex,
            sqlx::query::<DB>(FORGIVE_SQL)
                .bind(key)
                .bind(i64::from(policy.max_failures)),
        )
        .await?;
        Ok(())
    }

    /// Drops a counter that counts nothing and locks nothing.
    pub(crate) async fn drop_empty<'c>(
        ex: impl Executor<'c, Database = DB>,
        key: &str,
    ) -> StoreResult<()> {
        Self::changed(ex, sqlx::query::<DB>(DROP_EMPTY_SQL).bind(key)).await?;
        Ok(())
    }

    pub(crate) async fn clear_failures<'c>(
        ex: impl Executor<'c, Database = DB>,
        key: &str,
    ) -> StoreResult<()> {
        Self::changed(
            ex,
            sqlx::query::<DB>("DELETE FROM login_failures WHERE key = $1").bind(key),
        )
        .await?;
        Ok(())
    }

    /// Every counter whose key starts with `prefix` (`substr`, not `LIKE`:
    /// a user name may hold `LIKE`'s wildcards).
    pub(crate) async fn clear_failures_prefix<'c>(
        ex: impl Executor<'c, Database = DB>,
        prefix: &str,
    ) -> StoreResult<u64> {
        let done =
            sqlx::query::<DB>("DELETE FROM login_failures WHERE substr(key, 1, length($1)) = $1")
                .bind(prefix)
                .execute(ex)
                .await
                .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn delete_stale_failures<'c>(
        ex: impl Executor<'c, Database = DB>,
        now: Millis,
        window: Millis,
    ) -> StoreResult<u64> {
        Self::changed(
            ex,
            sqlx::query::<DB>(
                "DELETE FROM login_failures WHERE $1 - window_start >= $2 \
             AND (locked_until IS NULL OR locked_until <= $1)",
            )
            .bind(now)
            .bind(window),
        )
        .await
    }
}

/// The one method both drivers' query results have in common.
pub(crate) trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

#[cfg(feature = "sqlite")]
impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::sqlite::SqliteQueryResult::rows_affected(self)
    }
}

#[cfg(feature = "postgres")]
impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::postgres::PgQueryResult::rows_affected(self)
    }
}

/// The decision of `begin_attempt`, which returns the row's nonce (ours if
/// the attempt was counted) and its lock.
fn decided(last_nonce: i64, nonce: i64, until: Option<Millis>) -> Attempt {
    match until {
        _ if last_nonce == nonce => Attempt::Allowed,
        Some(until) => Attempt::Locked(until),
        None => Attempt::Busy,
    }
}

/// A random, non-zero tag for one attempt (see `last_nonce`).
fn attempt_nonce() -> i64 {
    i64::from_le_bytes(crate::random::random_bytes::<8>()) | 1
}
