//! User and session administration: what the CLI, the setup page and an
//! embedding app use to manage accounts. Every change that affects
//! privileges or credentials takes effect on existing sessions at their next
//! request, in this process or any other sharing the store.

use crate::auth::{AUDIT_TARGET, Auth};
use crate::cache::Change;
use crate::password::{HashError, PasswordRejected, check_new_password_async};
use crate::profile::{Profile, ProfileRejected};
use crate::secret::Password;
use crate::store::{NewUser, SessionRecord, StoreError, UserRecord};
use crate::username::{Username, UsernameRejected, lookup_keys, skeletons_of};

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// No user by that name.
    #[error("no user named {0:?}")]
    NotFound(String),
    /// The name is taken (case-insensitively).
    #[error("a user named {0:?} already exists")]
    Exists(String),
    /// The name is not acceptable.
    #[error("invalid username: {0}")]
    Username(#[from] UsernameRejected),
    /// The password is not acceptable.
    #[error("password refused: {0}")]
    Password(#[from] PasswordRejected),
    /// The display name or e-mail address is not acceptable.
    #[error("{0}")]
    Profile(#[from] ProfileRejected),
    /// A role name is not acceptable.
    #[error("invalid role {0:?}: use 1 to 64 letters, digits, '-', '_', '.' or ':'")]
    Role(String),
    /// The store failed.
    #[error("store error")]
    Store(#[from] StoreError),
    /// Hashing failed.
    #[error("password hashing failed")]
    Hash(#[from] HashError),
}

/// A user as shown to administrators: no password hash.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserSummary {
    /// Name (display form).
    pub username: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Display name, if set.
    pub display_name: Option<String>,
    /// E-mail address, if set.
    pub email: Option<String>,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Last change, RFC 3339.
    pub updated_at: String,
}

/// A session as shown to administrators: a short label, never the token.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionSummary {
    /// First 8 hex digits of the token's hash.
    pub id: String,
    /// Whose session.
    pub username: String,
    /// Sign-in time, RFC 3339.
    pub created_at: String,
    /// Last recorded activity, RFC 3339.
    pub last_seen: String,
}

pub use crate::clock::rfc3339;

fn summary(u: &UserRecord) -> UserSummary {
    UserSummary {
        username: u.username.clone(),
        roles: u.roles.clone(),
        display_name: u.display_name.clone(),
        email: u.email.clone(),
        disabled: u.disabled,
        created_at: rfc3339(u.created_at),
        updated_at: rfc3339(u.updated_at),
    }
}

/// Checks and normalises role names: sorted, without duplicates.
///
/// # Errors
/// [`AccountError::Role`] for the first bad name.
pub fn normalise_roles<I, S>(roles: I) -> Result<Vec<String>, AccountError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = Vec::new();
    for role in roles {
        let role = role.as_ref().trim();
        let ok = !role.is_empty()
            && role.len() <= 64
            && role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if !ok {
            return Err(AccountError::Role(role.to_owned()));
        }
        out.push(role.to_owned());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Account administration on top of an [`Auth`].
#[derive(Debug, Clone)]
pub struct Accounts {
    auth: Auth,
}

impl Auth {
    /// User and session administration.
    #[must_use]
    pub fn accounts(&self) -> Accounts {
        Accounts::new(self.clone())
    }
}

impl Accounts {
    pub(crate) fn new(auth: Auth) -> Self {
        Self { auth }
    }

    /// The user a name means, as sign-in finds it (see [`lookup_keys`]).
    async fn find(&self, name: &str) -> Result<UserRecord, AccountError> {
        for key in lookup_keys(name) {
            if let Some(user) = self.auth.stores().users.user_by_key(&key).await? {
                return Ok(user);
            }
        }
        Err(AccountError::NotFound(name.to_owned()))
    }

    /// Creates a user after checking the name and the password rules.
    ///
    /// # Errors
    /// See [`AccountError`].
    #[tracing::instrument(skip(self, password))]
    pub async fn create_user(
        &self,
        name: &str,
        password: &Password,
        roles: &[String],
    ) -> Result<UserSummary, AccountError> {
        self.create_user_with(name, password, roles, &Profile::default())
            .await
    }

    /// [`Accounts::create_user`] with a display name and e-mail address.
    ///
    /// # Errors
    /// See [`AccountError`].
    #[tracing::instrument(skip(self, password))]
    pub async fn create_user_with(
        &self,
        name: &str,
        password: &Password,
        roles: &[String],
        profile: &Profile,
    ) -> Result<UserSummary, AccountError> {
        let username = Username::parse(name)?;
        self.refuse_look_alikes(&username).await?;
        let roles = normalise_roles(roles)?;
        check_new_password_async(password, username.display()).await?;
        let hash = self.auth.hasher().hash(password).await?;
        let user = self
            .auth
            .stores()
            .users
            .create_user(NewUser {
                username: username.display().to_owned(),
                username_key: username.key().to_owned(),
                password_hash: hash,
                roles,
                display_name: profile.display_name().map(str::to_owned),
                email: profile.email().map(str::to_owned),
            })
            .await
            .map_err(|e| match e {
                StoreError::Conflict => AccountError::Exists(username.display().to_owned()),
                other => other.into(),
            })?;
        tracing::info!(target: AUDIT_TARGET, event = "user_created", username = %crate::username::InLog(&user.username), roles = ?user.roles);
        Ok(summary(&user))
    }

    /// Refuses a new name that is an existing user's by the rules of
    /// either era (a name stored as `ΣΑΣ` before PRECIS has the key
    /// `σας`, and is the same name as a new `σασ`), or looks like one (the
    /// same UTS #39 skeleton). Reads every user: creating accounts is rare,
    /// and a skeleton column would need a migration of every store for no
    /// faster answer where it matters.
    async fn refuse_look_alikes(&self, new: &Username) -> Result<(), AccountError> {
        let skeletons = new.skeletons();
        for user in self.auth.stores().users.list_users().await? {
            if lookup_keys(&user.username).iter().any(|k| k == new.key()) {
                return Err(AccountError::Exists(new.display().to_owned()));
            }
            let theirs = skeletons_of(&user.username);
            if skeletons.iter().any(|s| theirs.contains(s)) {
                return Err(UsernameRejected::LooksLike(user.username).into());
            }
        }
        Ok(())
    }

    /// All users.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn list_users(&self) -> Result<Vec<UserSummary>, AccountError> {
        Ok(self
            .auth
            .stores()
            .users
            .list_users()
            .await?
            .iter()
            .map(summary)
            .collect())
    }

    /// Whether any user exists.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn any_users(&self) -> Result<bool, AccountError> {
        Ok(self.auth.stores().users.count_users().await? > 0)
    }

    /// Sets a new password; every session of the user ends.
    ///
    /// # Errors
    /// See [`AccountError`].
    #[tracing::instrument(skip(self, password))]
    pub async fn change_password(
        &self,
        name: &str,
        password: &Password,
    ) -> Result<(), AccountError> {
        let user = self.find(name).await?;
        check_new_password_async(password, &user.username).await?;
        let hash = self.auth.hasher().hash(password).await?;
        if !self
            .auth
            .stores()
            .users
            .set_password_hash(user.id, &hash, true)
            .await?
        {
            return Err(AccountError::NotFound(name.to_owned()));
        }
        self.auth.invalidate(&Change::User(user.id));
        let ended = self
            .auth
            .stores()
            .sessions
            .delete_user_sessions(user.id)
            .await?;
        self.auth.invalidate(&Change::User(user.id));
        // The owner has a new password: earlier failures no longer count.
        self.clear_failures(&user.username_key).await?;
        tracing::info!(target: AUDIT_TARGET, event = "password_changed", username = %crate::username::InLog(&user.username), sessions_ended = ended);
        Ok(())
    }

    /// Adds and removes roles; the user's sessions get a new token and the
    /// new roles at their next request.
    ///
    /// # Errors
    /// See [`AccountError`].
    pub async fn change_roles(
        &self,
        name: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<Vec<String>, AccountError> {
        let user = self.find(name).await?;
        let add = normalise_roles(add)?;
        let remove = normalise_roles(remove)?;
        let roles = normalise_roles(
            user.roles
                .iter()
                .chain(add.iter())
                .filter(|r| !remove.contains(r)),
        )?;
        let changed = self.auth.stores().users.set_roles(user.id, &roles).await?;
        self.auth.invalidate(&Change::User(user.id));
        if !changed {
            return Err(AccountError::NotFound(name.to_owned()));
        }
        tracing::info!(target: AUDIT_TARGET, event = "roles_changed", username = %crate::username::InLog(&user.username), roles = ?roles);
        Ok(roles)
    }

    /// The user's display name and e-mail address.
    ///
    /// # Errors
    /// [`AccountError::NotFound`], or the store's.
    pub async fn profile(&self, name: &str) -> Result<Profile, AccountError> {
        let user = self.find(name).await?;
        Ok(Profile::from_stored(user.display_name, user.email))
    }

    /// Replaces the display name and e-mail address (a [`Profile`] with
    /// none clears them); the user's sessions, and the apps behind
    /// forward-auth, see the new ones at their next request.
    ///
    /// # Errors
    /// See [`AccountError`].
    pub async fn set_profile(&self, name: &str, profile: &Profile) -> Result<(), AccountError> {
        let user = self.find(name).await?;
        let changed = self
            .auth
            .stores()
            .users
            .set_profile(user.id, profile.display_name(), profile.email())
            .await?;
        self.auth.invalidate(&Change::User(user.id));
        if !changed {
            return Err(AccountError::NotFound(name.to_owned()));
        }
        tracing::info!(target: AUDIT_TARGET, event = "profile_changed", username = %crate::username::InLog(&user.username));
        Ok(())
    }

    /// Disables (every session ends, login refused) or enables a user.
    ///
    /// # Errors
    /// See [`AccountError`].
    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<(), AccountError> {
        let user = self.find(name).await?;
        if !self
            .auth
            .stores()
            .users
            .set_disabled(user.id, disabled)
            .await?
        {
            return Err(AccountError::NotFound(name.to_owned()));
        }
        self.auth.invalidate(&Change::User(user.id));
        if disabled {
            self.auth
                .stores()
                .sessions
                .delete_user_sessions(user.id)
                .await?;
            self.auth.invalidate(&Change::User(user.id));
        } else {
            // Enabling gives the owner a clean start.
            self.clear_failures(&user.username_key).await?;
        }
        let event = if disabled {
            "user_disabled"
        } else {
            "user_enabled"
        };
        tracing::info!(target: AUDIT_TARGET, event, username = %crate::username::InLog(&user.username));
        Ok(())
    }

    /// Lifts the account's locks (for untrusted clients and for each of its
    /// devices) and forgets its failed sign-ins, so that its owner can sign
    /// in at once. Locks on client addresses stay.
    ///
    /// # Errors
    /// [`AccountError::NotFound`], or when the store fails.
    pub async fn unlock(&self, name: &str) -> Result<(), AccountError> {
        let user = self.find(name).await?;
        self.clear_failures(&user.username_key).await?;
        tracing::info!(target: AUDIT_TARGET, event = "account_unlocked", username = %crate::username::InLog(&user.username));
        Ok(())
    }

    async fn clear_failures(&self, username_key: &str) -> Result<(), AccountError> {
        // The account's counter for untrusted clients and its devices'.
        let key = crate::auth::account_counter(username_key);
        let failures = &self.auth.stores().failures;
        failures.clear(&key).await?;
        failures
            .clear_prefix(&format!("{key}{}", crate::auth::DEVICE_SEPARATOR))
            .await?;
        Ok(())
    }

    /// Deletes a user and every session of theirs.
    ///
    /// # Errors
    /// See [`AccountError`].
    pub async fn remove_user(&self, name: &str) -> Result<(), AccountError> {
        let user = self.find(name).await?;
        self.auth
            .stores()
            .sessions
            .delete_user_sessions(user.id)
            .await?;
        if !self.auth.stores().users.remove_user(user.id).await? {
            return Err(AccountError::NotFound(name.to_owned()));
        }
        self.auth.invalidate(&Change::User(user.id));
        tracing::info!(target: AUDIT_TARGET, event = "user_removed", username = %crate::username::InLog(&user.username));
        Ok(())
    }

    /// Live sessions, of one user or of all.
    ///
    /// # Errors
    /// See [`AccountError`].
    pub async fn list_sessions(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<SessionSummary>, AccountError> {
        let stores = self.auth.stores();
        let filter = match name {
            Some(n) => Some(self.find(n).await?.id),
            None => None,
        };
        let users = stores.users.list_users().await?;
        let sessions: Vec<SessionRecord> = stores.sessions.list(filter).await?;
        Ok(sessions
            .iter()
            .map(|s| SessionSummary {
                id: s.key.short(),
                username: users
                    .iter()
                    .find(|u| u.id == s.user_id)
                    .map_or_else(|| format!("#{}", s.user_id.0), |u| u.username.clone()),
                created_at: rfc3339(s.created_at),
                last_seen: rfc3339(s.last_seen),
            })
            .collect())
    }

    /// Ends every session of a user; returns how many.
    ///
    /// # Errors
    /// See [`AccountError`].
    pub async fn revoke_sessions(&self, name: &str) -> Result<u64, AccountError> {
        let user = self.find(name).await?;
        let n = self
            .auth
            .stores()
            .sessions
            .delete_user_sessions(user.id)
            .await?;
        self.auth.invalidate(&Change::User(user.id));
        tracing::info!(target: AUDIT_TARGET, event = "revocation", outcome = "success",
            username = %crate::username::InLog(&user.username), sessions = n);
        Ok(n)
    }
}
