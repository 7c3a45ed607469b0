//! An in-process store for tests and throwaway instances: nothing survives a restart.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    Attempt, FailurePolicy, FailureRow, FailureStore, Millis, NewUser, SessionKey, SessionRecord,
    SessionStore, StoreError, StoreResult, UserId, UserRecord, UserStore, failed_state,
    forgiven_state, next_attempt_state, now_millis,
};

/// Users, sessions and counters in memory, behind one mutex each.
#[derive(Default)]
pub struct MemoryStore {
    users: Mutex<Users>,
    sessions: Mutex<HashMap<SessionKey, SessionRecord>>,
    failures: Mutex<HashMap<String, FailureRow>>,
}

#[derive(Default)]
struct Users {
    next_id: i64,
    by_id: HashMap<UserId, UserRecord>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryStore")
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-written in a
    // way that matters more than losing the whole store, so poison is ignored.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryStore {
    fn update_user(&self, id: UserId, f: impl FnOnce(&mut UserRecord)) -> bool {
        let mut users = lock(&self.users);
        match users.by_id.get_mut(&id) {
            Some(user) => {
                f(user);
                user.updated_at = now_millis();
                true
            }
            None => false,
        }
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn create_user(&self, user: NewUser) -> StoreResult<UserRecord> {
        let mut users = lock(&self.users);
        if users
            .by_id
            .values()
            .any(|u| u.username_key == user.username_key)
        {
            return Err(StoreError::Conflict);
        }
        users.next_id += 1;
        let now = now_millis();
        let record = UserRecord {
            id: UserId(users.next_id),
            username: user.username,
            username_key: user.username_key,
            password_hash: user.password_hash,
            roles: user.roles,
            display_name: user.display_name,
            email: user.email,
            disabled: false,
            credential_epoch: 0,
            roles_epoch: 0,
            created_at: now,
            updated_at: now,
        };
        users.by_id.insert(record.id, record.clone());
        Ok(record)
    }

    async fn user_by_key(&self, username_key: &str) -> StoreResult<Option<UserRecord>> {
        Ok(lock(&self.users)
            .by_id
            .values()
            .find(|u| u.username_key == username_key)
            .cloned())
    }

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
        Ok(lock(&self.users).by_id.get(&id).cloned())
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        let mut all: Vec<_> = lock(&self.users).by_id.values().cloned().collect();
        all.sort_by(|a, b| a.username_key.cmp(&b.username_key));
        Ok(all)
    }

    async fn count_users(&self) -> StoreResult<u64> {
        Ok(lock(&self.users).by_id.len() as u64)
    }

    async fn each_password_hash(
        &self,
        each: &mut (dyn for<'h> FnMut(&'h str) + Send),
    ) -> StoreResult<()> {
        for user in lock(&self.users).by_id.values() {
            each(&user.password_hash);
        }
        Ok(())
    }

    async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: &str,
        end_sessions: bool,
    ) -> StoreResult<bool> {
        Ok(self.update_user(id, |u| {
            password_hash.clone_into(&mut u.password_hash);
            if end_sessions {
                u.credential_epoch += 1;
            }
        }))
    }

    async fn set_roles(&self, id: UserId, roles: &[String]) -> StoreResult<bool> {
        Ok(self.update_user(id, |u| {
            u.roles = roles.to_vec();
            u.roles_epoch += 1;
        }))
    }

    async fn set_profile(
        &self,
        id: UserId,
        display_name: Option<&str>,
        email: Option<&str>,
    ) -> StoreResult<bool> {
        Ok(self.update_user(id, |u| {
            u.display_name = display_name.map(str::to_owned);
            u.email = email.map(str::to_owned);
        }))
    }

    async fn set_disabled(&self, id: UserId, disabled: bool) -> StoreResult<bool> {
        Ok(self.update_user(id, |u| {
            if disabled && !u.disabled {
                u.credential_epoch += 1;
            }
            u.disabled = disabled;
        }))
    }

    async fn remove_user(&self, id: UserId) -> StoreResult<bool> {
        let removed = lock(&self.users).by_id.remove(&id).is_some();
        if removed {
            lock(&self.sessions).retain(|_, s| s.user_id != id);
        }
        Ok(removed)
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, session: &SessionRecord) -> StoreResult<()> {
        let mut sessions = lock(&self.sessions);
        if sessions.contains_key(&session.key) {
            return Err(StoreError::Conflict);
        }
        sessions.insert(session.key, session.clone());
        Ok(())
    }

    async fn load(&self, key: &SessionKey) -> StoreResult<Option<SessionRecord>> {
        Ok(lock(&self.sessions).get(key).cloned())
    }

    async fn touch(&self, key: &SessionKey, last_seen: Millis) -> StoreResult<bool> {
        Ok(match lock(&self.sessions).get_mut(key) {
            Some(s) => {
                s.last_seen = s.last_seen.max(last_seen);
                true
            }
            None => false,
        })
    }

    async fn rotate(&self, old: &SessionKey, new: &SessionRecord) -> StoreResult<bool> {
        let mut sessions = lock(&self.sessions);
        if sessions.contains_key(&new.key) {
            return Err(StoreError::Conflict);
        }
        if sessions.remove(old).is_none() {
            return Ok(false);
        }
        sessions.insert(new.key, new.clone());
        Ok(true)
    }

    async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
        Ok(lock(&self.sessions).remove(key).is_some())
    }

    async fn delete_user_sessions(&self, user: UserId) -> StoreResult<u64> {
        let mut sessions = lock(&self.sessions);
        let before = sessions.len();
        sessions.retain(|_, s| s.user_id != user);
        Ok((before - sessions.len()) as u64)
    }

    async fn list(&self, user: Option<UserId>) -> StoreResult<Vec<SessionRecord>> {
        let mut all: Vec<_> = lock(&self.sessions)
            .values()
            .filter(|s| user.is_none_or(|u| s.user_id == u))
            .cloned()
            .collect();
        all.sort_by_key(|s| (s.created_at, s.key.0));
        Ok(all)
    }

    async fn delete_expired(
        &self,
        idle_before: Millis,
        created_before: Millis,
    ) -> StoreResult<u64> {
        let mut sessions = lock(&self.sessions);
        let before = sessions.len();
        sessions.retain(|_, s| s.last_seen >= idle_before && s.created_at >= created_before);
        Ok((before - sessions.len()) as u64)
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}

#[async_trait]
impl FailureStore for MemoryStore {
    async fn locked_until(&self, key: &str, now: Millis) -> StoreResult<Option<Millis>> {
        Ok(lock(&self.failures)
            .get(key)
            .and_then(|&(_, _, until)| until.filter(|&u| u > now)))
    }

    async fn begin_attempt(
        &self,
        key: &str,
        now: Millis,
        policy: FailurePolicy,
    ) -> StoreResult<Attempt> {
        let mut failures = lock(&self.failures);
        let (row, attempt) = next_attempt_state(failures.get(key).copied(), now, policy);
        failures.insert(key.to_owned(), row);
        Ok(attempt)
    }

    async fn fail(
        &self,
        key: &str,
        now: Millis,
        policy: FailurePolicy,
    ) -> StoreResult<Option<Millis>> {
        let mut failures = lock(&self.failures);
        Ok(failures.get_mut(key).and_then(|row| {
            *row = failed_state(*row, now, policy);
            row.2
        }))
    }

    async fn forgive(&self, key: &str, policy: FailurePolicy) -> StoreResult<()> {
        let mut failures = lock(&self.failures);
        if let Some(row) = failures.get_mut(key) {
            *row = forgiven_state(*row, policy);
            if row.0 <= 0 && row.2.is_none() {
                failures.remove(key);
            }
        }
        Ok(())
    }

    async fn clear(&self, key: &str) -> StoreResult<()> {
        lock(&self.failures).remove(key);
        Ok(())
    }

    async fn clear_prefix(&self, prefix: &str) -> StoreResult<u64> {
        let mut failures = lock(&self.failures);
        let before = failures.len();
        failures.retain(|key, _| !key.starts_with(prefix));
        Ok((before - failures.len()) as u64)
    }

    async fn delete_stale(&self, now: Millis, window: Millis) -> StoreResult<u64> {
        let mut failures = lock(&self.failures);
        let before = failures.len();
        failures.retain(|_, &mut (_, start, until)| {
            now - start < window || until.is_some_and(|u| u > now)
        });
        Ok((before - failures.len()) as u64)
    }
}
