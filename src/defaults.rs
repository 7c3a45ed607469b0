//! The defaults that every way of setting latchkey up shares: the
//! embedding API ([`crate::Auth::builder`]) and the service's configuration
//! start from the same values, so that they cannot drift apart.

use std::time::Duration;

/// SQLite in the working directory.
pub(crate) const DATABASE_URL: &str = "sqlite://latchkey.db";
/// Plain http on loopback: development on this machine.
pub(crate) const PUBLIC_URL: &str = "http://127.0.0.1:8080";
/// A session unused this long ends (OWASP: 15 to 30 minutes for most sites).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, used or not.
pub(crate) const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60);
/// Failed sign-ins per account within [`LOGIN_WINDOW`] that lock it.
pub(crate) const ACCOUNT_MAX_FAILURES: u32 = 5;
/// Failed sign-ins per client address within [`LOGIN_WINDOW`] that lock it.
pub(crate) const ADDRESS_MAX_FAILURES: u32 = 50;
/// How far back failures count.
pub(crate) const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a lock lasts.
pub(crate) const LOGIN_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Sign-in and setup requests per client address and minute.
pub(crate) const LOGIN_RATE: u32 = 120;
/// How long a refused sign-in waits before it is answered.
pub(crate) const REFUSAL_DELAY: Duration = Duration::from_secs(1);
/// The shortest change-feed timeout: heartbeats go out four times per
/// timeout, and shorter ones would make the feeds mostly heartbeats.
pub(crate) const MIN_CHANGE_FEED_TIMEOUT: Duration = Duration::from_millis(40);

/// Content-Security-Policy for every page: scripts and styles only as files
/// from this origin (the one script is `static/latchkey.js`; nothing inline,
/// no eval), forms only to this origin, no framing.
#[cfg(feature = "pages")]
pub(crate) const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                                   img-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
                                   form-action 'self'";

/// [`PAGE_CSP`] without its `form-action`, for the sign-in and sign-out
/// pages, which add their own (a directive given twice counts once).
pub(crate) const PAGE_CSP_WITHOUT_FORM_ACTION: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; frame-ancestors 'none'; base-uri 'none'";
