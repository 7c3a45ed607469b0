//! The session a request carries, and the signed-in session in it: what
//! the session layer (see [`crate::layer`]) finds and the cache keeps.

use std::sync::Arc;

use crate::store::{Millis, SessionKey, UserId};

/// A signed-in user's session, as seen by one request.
#[derive(Clone)]
pub struct ActiveSession {
    /// The user's id.
    pub user_id: UserId,
    /// The user's name (display form).
    pub username: String,
    /// The user's roles, current as of this request.
    pub roles: Vec<String>,
    /// What the user is called, if set (`Remote-Name` in forward-auth).
    pub display_name: Option<String>,
    /// The user's e-mail address, if set (`Remote-Email`).
    pub email: Option<String>,
    /// The token that state-changing requests must carry.
    pub csrf_token: String,
    /// Forward-auth's identity headers (`Remote-User`, `-Groups`, `-Name`,
    /// `-Email`), made at the session's first check: later checks of the
    /// cached session clone them instead of building four values each.
    pub(crate) forward_headers: std::sync::OnceLock<[axum::http::HeaderValue; 4]>,
    /// When the user signed in.
    pub created_at: Millis,
    /// The same, as RFC 3339 text (formatted once, not per request).
    pub signed_in_at: String,
    pub(crate) key: SessionKey,
}

impl std::fmt::Debug for ActiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveSession")
            .field("user_id", &self.user_id)
            .field("username", &self.username)
            .field("roles", &self.roles)
            .field("csrf_token", &"[redacted]")
            .field("session", &self.key)
            .finish_non_exhaustive()
    }
}

impl ActiveSession {
    /// Whether the user has the role.
    #[must_use]
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// A short, non-secret label of the session (for listings and logs).
    #[must_use]
    pub fn label(&self) -> String {
        self.key.short()
    }
}

/// The request's session, signed in or not. Always available behind
/// [`crate::SessionLayer`].
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub(crate) active: Option<Arc<ActiveSession>>,
    pub(crate) rotated_from: Option<SessionKey>,
    pub(crate) ended: bool,
}

impl Session {
    /// The signed-in session, if any.
    #[must_use]
    pub fn active(&self) -> Option<&Arc<ActiveSession>> {
        self.active.as_ref()
    }

    /// Whether the request carried a genuine session cookie whose session
    /// has ended (signed out elsewhere, revoked, expired, or replaced):
    /// the visitor was signed in and is no longer.
    #[must_use]
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The key this request's session had before this request rotated it.
    pub(crate) fn rotated_from(&self) -> Option<&SessionKey> {
        self.rotated_from.as_ref()
    }

    pub(crate) fn anonymous() -> Self {
        Self::default()
    }

    pub(crate) fn signed_in(active: Arc<ActiveSession>) -> Self {
        Self {
            active: Some(active),
            ..Self::default()
        }
    }
}
