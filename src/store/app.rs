//! Users kept by the app in its own table: a small trait the app
//! implements ([`AppUsers`]), and the adapter that makes it latchkey's
//! [`UserStore`]. Sessions and failure counters stay in latchkey's store.

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};

use super::{NewUser, StoreError, StoreResult, UserId, UserRecord, UserStore};

/// An error of the app's user store, shown to nobody but the log.
pub type AppUsersError = Box<dyn std::error::Error + Send + Sync>;

/// A user as the app keeps them.
#[derive(Clone)]
pub struct AppUser {
    /// The app's id for them.
    pub id: i64,
    /// The name they sign in with, for display.
    pub username: String,
    /// Their password hash, a PHC string: argon2id (as
    /// [`crate::password::PasswordHasher::hash`] makes it), scrypt, PBKDF2,
    /// or a bcrypt hash.
    pub password_hash: String,
    /// Their roles.
    pub roles: Vec<String>,
    /// A disabled user cannot sign in, and their sessions end.
    pub disabled: bool,
    /// What they are called, sent to apps behind forward-auth as
    /// `Remote-Name` (not checked: the app's to keep clean of line breaks).
    pub display_name: Option<String>,
    /// Their e-mail address, sent as `Remote-Email`.
    pub email: Option<String>,
}

impl std::fmt::Debug for AppUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppUser")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &"[redacted]")
            .field("roles", &self.roles)
            .field("disabled", &self.disabled)
            .field("display_name", &self.display_name)
            .field("email", &self.email)
            .finish()
    }
}

/// Users the app keeps itself, plugged in with
/// [`crate::AuthBuilder::users`]: latchkey asks for a user by name at
/// sign-in and by id when it checks a session, and never writes them
/// (user administration is the app's). A changed password hash or a
/// disabled flag ends the user's sessions, and changed roles rotate them,
/// at their next request, as with latchkey's own users.
#[async_trait]
pub trait AppUsers: Send + Sync + 'static {
    /// The user who signs in as `key`: the typed name normalised (NFKC)
    /// and lower-cased (see [`crate::username::key_of`]), so match it
    /// against names stored the same way. `None` when there is none.
    async fn by_name(&self, key: &str) -> Result<Option<AppUser>, AppUsersError>;

    /// The user with this id, as they are now; `None` when removed.
    async fn by_id(&self, id: i64) -> Result<Option<AppUser>, AppUsersError>;

    /// A new hash of the same password, made at sign-in when the stored
    /// one was made with weaker settings than today's. By default it is
    /// not kept.
    async fn rehashed(&self, id: i64, password_hash: &str) -> Result<(), AppUsersError> {
        let _ = (id, password_hash);
        Ok(())
    }
}

/// Why latchkey itself cannot change an app's user.
#[derive(Debug, thiserror::Error)]
#[error("users are managed by the app, not by latchkey")]
struct ManagedByTheApp;

/// An [`AppUsers`] as latchkey's [`UserStore`].
pub(crate) struct AppUserStore(pub(crate) Arc<dyn AppUsers>);

/// A number that changes whenever any of `parts` does: the app's table
/// has no epochs, so sessions compare these instead.
fn epoch_of(parts: &[&[u8]]) -> i64 {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update((part.len() as u64).to_le_bytes());
        digest.update(part);
    }
    let bytes = digest.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    i64::from_le_bytes(first)
}

fn record(user: AppUser) -> UserRecord {
    let credential_epoch = epoch_of(&[user.password_hash.as_bytes(), &[u8::from(user.disabled)]]);
    let mut roles = user.roles;
    roles.sort();
    roles.dedup();
    let joined = roles.join("\n");
    UserRecord {
        id: UserId(user.id),
        username_key: crate::username::key_of(&user.username),
        username: user.username,
        password_hash: user.password_hash,
        roles_epoch: epoch_of(&[joined.as_bytes()]),
        roles,
        display_name: user.display_name,
        email: user.email,
        disabled: user.disabled,
        credential_epoch,
        created_at: 0,
        updated_at: 0,
    }
}

fn app_error(e: AppUsersError) -> StoreError {
    StoreError::Unavailable(e)
}

fn managed() -> StoreError {
    StoreError::unavailable(ManagedByTheApp)
}

#[async_trait]
impl UserStore for AppUserStore {
    async fn create_user(&self, _: NewUser) -> StoreResult<UserRecord> {
        Err(managed())
    }

    async fn user_by_key(&self, username_key: &str) -> StoreResult<Option<UserRecord>> {
        Ok(self
            .0
            .by_name(username_key)
            .await
            .map_err(app_error)?
            .map(record))
    }

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
        Ok(self.0.by_id(id.0).await.map_err(app_error)?.map(record))
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        Err(managed())
    }

    async fn count_users(&self) -> StoreResult<u64> {
        Err(managed())
    }

    async fn each_password_hash(
        &self,
        _: &mut (dyn for<'h> FnMut(&'h str) + Send),
    ) -> StoreResult<()> {
        // The app's schemes are learnt at their first sign-in instead.
        Ok(())
    }

    async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: &str,
        end_sessions: bool,
    ) -> StoreResult<bool> {
        if end_sessions {
            return Err(managed());
        }
        self.0
            .rehashed(id.0, password_hash)
            .await
            .map_err(app_error)?;
        Ok(true)
    }

    async fn set_roles(&self, _: UserId, _: &[String]) -> StoreResult<bool> {
        Err(managed())
    }

    async fn set_profile(&self, _: UserId, _: Option<&str>, _: Option<&str>) -> StoreResult<bool> {
        Err(managed())
    }

    async fn set_disabled(&self, _: UserId, _: bool) -> StoreResult<bool> {
        Err(managed())
    }

    async fn remove_user(&self, _: UserId) -> StoreResult<bool> {
        Err(managed())
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> AppUser {
        AppUser {
            id: 7,
            username: "Ann".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
            roles: vec!["ops".into(), "admin".into()],
            disabled: false,
            display_name: None,
            email: None,
        }
    }

    #[test]
    fn a_new_hash_or_disabling_changes_the_credential_epoch_and_new_roles_the_roles_epoch() {
        let before = record(ann());
        assert_eq!(before.username_key, "ann");
        assert_eq!(before.roles, ["admin", "ops"]);
        let same = record(ann());
        assert_eq!(
            (same.credential_epoch, same.roles_epoch),
            (before.credential_epoch, before.roles_epoch)
        );
        let disabled = record(AppUser {
            disabled: true,
            ..ann()
        });
        assert_ne!(disabled.credential_epoch, before.credential_epoch);
        let new_password = record(AppUser {
            password_hash: "$2b$12$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".into(),
            ..ann()
        });
        assert_ne!(new_password.credential_epoch, before.credential_epoch);
        assert_eq!(new_password.roles_epoch, before.roles_epoch);
        let new_roles = record(AppUser {
            roles: vec!["admin".into()],
            ..ann()
        });
        assert_ne!(new_roles.roles_epoch, before.roles_epoch);
        assert_eq!(new_roles.credential_epoch, before.credential_epoch);
    }
}
