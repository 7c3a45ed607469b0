//! [`Auth::builder`]: an [`Auth`] from a few settings, every other one at
//! the service's default, for an app that embeds the login.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::auth::{Auth, AuthSettings};
use crate::clock::{Clock, SystemClock, millis};
use crate::csrf::Origins;
use crate::defaults;
use crate::password::{HashParams, PasswordHasher};
use crate::paths::{PathError, Paths};
use crate::secret::ServerSecret;
use crate::session::{CookieSettings, SameSite};
use crate::store::{AppUserStore, AppUsers, FailurePolicy, StoreOptions, Stores};

/// Settings for an [`Auth`], each with the service's default; see
/// [`Auth::builder`]. [`AuthBuilder::build`] opens the stores, reads (or
/// creates) the secret, and starts the background cleanup of expired
/// sessions.
#[must_use = "call .build().await to get the Auth"]
pub struct AuthBuilder {
    database_url: String,
    session_store_url: Option<String>,
    stores: Option<Stores>,
    users: Option<Arc<dyn AppUsers>>,
    secret: Option<ServerSecret>,
    secret_file: Option<PathBuf>,
    previous_secrets: Vec<ServerSecret>,
    public_url: String,
    allowed_origins: Vec<String>,
    same_site: SameSite,
    cookie_domain: Option<String>,
    idle_timeout: Duration,
    absolute_timeout: Duration,
    account_failures: FailurePolicy,
    address_failures: FailurePolicy,
    login_rate: u32,
    refusal_delay: Duration,
    trusted_proxies: Vec<IpNet>,
    hash_params: HashParams,
    hash_threads: usize,
    prefix: String,
    home: String,
    clock: Arc<dyn Clock>,
    change_feed_timeout: Duration,
    cleanup: bool,
}

impl std::fmt::Debug for AuthBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthBuilder")
            .field(
                "database_url",
                &crate::store::redact_url(&self.database_url),
            )
            .field("public_url", &self.public_url)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Why [`AuthBuilder::build`] failed; the message says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The public URL is not an http(s) URL, or is plain http beyond this machine.
    #[error("public URL {url:?}: {reason}")]
    PublicUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An allowed origin is not an http(s) origin.
    #[error("allowed origin {origin:?}: {reason}")]
    Origin {
        /// The origin given.
        origin: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A prefix or home path is not a plain path.
    #[error(transparent)]
    Paths(#[from] PathError),
    /// No secret was given and none can be kept beside the database.
    #[error(
        "a secret is needed for {0}: call .secret(…) or .secret_file(…) \
         (every instance that shares the database needs the same one)"
    )]
    NoSecret(String),
    /// The secret file cannot be read or created, or holds too short a secret.
    #[error("secret file {path}: {reason}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The stores could not be opened.
    #[error("cannot open {url}: {reason}")]
    Store {
        /// The URL, its password hidden.
        url: String,
        /// What went wrong, with its causes.
        reason: String,
    },
    /// The cookie domain is not a host name the public URL is under, or
    /// the public URL is not https.
    #[error("cookie domain {domain:?}: {reason}")]
    CookieDomain {
        /// The domain given.
        domain: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A setting that would leave the login without a limit or a session
    /// without a lifetime.
    #[error("{0}")]
    Setting(String),
    /// The password hasher could not start (bad argon2 settings).
    #[error("password hashing: {0}")]
    Hasher(String),
}

impl Auth {
    /// Settings for an [`Auth`], every one at the service's default:
    /// SQLite in `latchkey.db` (its secret generated into
    /// `latchkey.db.secret` beside it), public URL `http://127.0.0.1:8080`,
    /// sessions ending after 30 minutes unused or 12 hours in all, the
    /// login pages at `/login` and `/logout`, and a sign-in going to `/`
    /// when no page asked for it.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), latchkey::BuildError> {
    /// let auth = latchkey::Auth::builder()
    ///     .database_url("sqlite://app.db")
    ///     .public_url("http://127.0.0.1:3000")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> AuthBuilder {
        let hash = HashParams::default();
        let policy = |max_failures| FailurePolicy {
            max_failures,
            window: millis(defaults::LOGIN_WINDOW),
            lockout: millis(defaults::LOGIN_LOCKOUT),
        };
        AuthBuilder {
            database_url: defaults::DATABASE_URL.into(),
            session_store_url: None,
            stores: None,
            users: None,
            secret: None,
            secret_file: None,
            previous_secrets: Vec::new(),
            public_url: defaults::PUBLIC_URL.into(),
            allowed_origins: Vec::new(),
            same_site: SameSite::Lax,
            cookie_domain: None,
            idle_timeout: defaults::IDLE_TIMEOUT,
            absolute_timeout: defaults::ABSOLUTE_TIMEOUT,
            account_failures: policy(defaults::ACCOUNT_MAX_FAILURES),
            address_failures: policy(defaults::ADDRESS_MAX_FAILURES),
            login_rate: defaults::LOGIN_RATE,
            refusal_delay: defaults::REFUSAL_DELAY,
            trusted_proxies: Vec::new(),
            hash_params: hash,
            hash_threads: 0,
            prefix: String::new(),
            home: "/".into(),
            clock: Arc::new(SystemClock),
            change_feed_timeout: crate::store::feed::DEFAULT_LIVENESS,
            cleanup: true,
        }
    }
}

impl AuthBuilder {
    /// Where users (and, without a session store, sessions) are kept:
    /// `sqlite://PATH`, `postgres://…`, or `memory:` (gone at exit).
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = url.into();
        self
    }

    /// A Redis URL for sessions and failure counters.
    pub fn session_store_url(mut self, url: impl Into<String>) -> Self {
        self.session_store_url = Some(url.into());
        self
    }

    /// Stores opened by the caller (an app's own user store, say), instead
    /// of the URLs.
    pub fn stores(mut self, stores: Stores) -> Self {
        self.stores = Some(stores);
        self
    }

    /// Users the app keeps in its own table, instead of latchkey's; see
    /// [`AppUsers`]. Sessions and failure counters stay in the stores
    /// named by the URLs. Since latchkey cannot hear of the app's changes
    /// to its users, it then keeps no session cache: every request asks
    /// the session store and the app for the user.
    pub fn users(mut self, users: impl AppUsers) -> Self {
        self.users = Some(Arc::new(users));
        self
    }

    /// The secret that signs cookies and CSRF tokens.
    pub fn secret(mut self, secret: ServerSecret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// A file holding the secret (readable by its owner only). Without
    /// it, a secret is generated beside an SQLite database.
    pub fn secret_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.secret_file = Some(path.into());
        self
    }

    /// Secrets used before this one: their cookies and tokens stay valid
    /// (and cookies are re-signed), so rotating the secret signs nobody out.
    pub fn previous_secrets(mut self, secrets: Vec<ServerSecret>) -> Self {
        self.previous_secrets = secrets;
        self
    }

    /// The site's address as browsers see it (`https://example.com`):
    /// where links and redirects point, and the origin whose forms are
    /// accepted. Cookies are `Secure` when it is https; plain http is
    /// accepted only for this machine.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = url.into();
        self
    }

    /// Another origin the site is also reached at (`https://www.example.com`,
    /// a second host name or port), whose pages' forms and requests are
    /// accepted as the site's own; call again for more. Links and
    /// redirects still point to the public URL.
    pub fn allowed_origin(mut self, origin: impl Into<String>) -> Self {
        self.allowed_origins.push(origin.into());
        self
    }

    /// The cookies' `SameSite` (default `Lax`).
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Shares the session with every host under `domain` (`example.com`:
    /// one sign-on for `auth.example.com`, `app.example.com` …, as
    /// forward-auth needs when latchkey's pages and the apps it protects
    /// have host names of their own). The session and CSRF cookies then
    /// carry `Domain` and the `__Secure-` prefix, and a return URL (`rd`)
    /// may name any host under it. The public URL must be https and under
    /// `domain`. Every host under it can then read (and set) the cookie:
    /// give it only to hosts you trust.
    pub fn cookie_domain(mut self, domain: impl Into<String>) -> Self {
        self.cookie_domain = Some(domain.into());
        self
    }

    /// A session unused this long ends (default 30 minutes).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// A session ends this long after sign-in, however busy (default 12 hours).
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.absolute_timeout = timeout;
        self
    }

    /// Failed sign-ins per account before it is locked (default 5 in 15
    /// minutes, locked 15 minutes).
    pub fn account_failures(mut self, policy: FailurePolicy) -> Self {
        self.account_failures = policy;
        self
    }

    /// Failed sign-ins per client address before it is locked (default 50
    /// in 15 minutes, locked 15 minutes).
    pub fn address_failures(mut self, policy: FailurePolicy) -> Self {
        self.address_failures = policy;
        self
    }

    /// Sign-in requests per client address and minute (default 120).
    pub fn login_rate(mut self, per_minute: u32) -> Self {
        self.login_rate = per_minute;
        self
    }

    /// How long a refused sign-in waits before it is answered (default 1 s).
    pub fn refusal_delay(mut self, delay: Duration) -> Self {
        self.refusal_delay = delay;
        self
    }

    /// Proxies whose `X-Forwarded-For` is believed.
    pub fn trusted_proxies(mut self, proxies: Vec<IpNet>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// argon2id's cost for new hashes (default OWASP's 19 MiB, 2 passes).
    pub fn hash_params(mut self, params: HashParams) -> Self {
        self.hash_params = params;
        self
    }

    /// Threads that hash passwords (default: one per core).
    pub fn hash_threads(mut self, threads: usize) -> Self {
        self.hash_threads = threads;
        self
    }

    /// Where [`Auth::routes`] puts the login pages: `""` (the default) for
    /// `/login` and `/logout`, or like `/auth` for `/auth/login`.
    pub fn pages_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Where a sign-in goes when no page asked for it (default `/`).
    pub fn home(mut self, path: impl Into<String>) -> Self {
        self.home = path.into();
        self
    }

    /// The clock every decision by time asks (tests move time with
    /// [`crate::clock::AdjustableClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long a store's change feed may stay silent (no change and no
    /// heartbeat) before this instance stops trusting its session cache and
    /// asks the store on every request, until the feed is heard again
    /// (default 1 s, at least 40 ms). Sign-outs and revocations on other instances hold here
    /// at the latest this long (and a quarter) after they are made.
    pub fn change_feed_timeout(mut self, timeout: Duration) -> Self {
        self.change_feed_timeout = timeout;
        self
    }

    /// Whether [`AuthBuilder::build`] starts the task that deletes expired
    /// sessions (default yes; [`Auth::spawn_cleanup`] starts it later).
    pub fn cleanup(mut self, start: bool) -> Self {
        self.cleanup = start;
        self
    }

    /// Opens the stores, reads or creates the secret, starts the password
    /// hasher and (unless turned off) the cleanup task. Must be called
    /// inside a tokio runtime.
    ///
    /// # Errors
    /// [`BuildError`], whose message says what to change.
    pub async fn build(self) -> Result<Auth, BuildError> {
        let public = url::Url::parse(&self.public_url).map_err(|_| BuildError::PublicUrl {
            url: self.public_url.clone(),
            reason: "not a URL like https://example.com",
        })?;
        let secure = match public.scheme() {
            "https" => true,
            "http" if crate::redirect::is_this_machine(&public) => false,
            "http" => {
                return Err(BuildError::PublicUrl {
                    url: self.public_url,
                    reason: "plain http is only for this machine (127.0.0.1, ::1, localhost); \
                             use https",
                });
            }
            _ => {
                return Err(BuildError::PublicUrl {
                    url: self.public_url,
                    reason: "the scheme must be http or https",
                });
            }
        };
        let mut origins = Origins::new(public.origin().ascii_serialization());
        for origin in &self.allowed_origins {
            let parsed = Origins::parse(origin).map_err(|reason| BuildError::Origin {
                origin: origin.clone(),
                reason,
            })?;
            origins = origins.also(parsed);
        }
        let paths = Paths::new(&self.prefix, &self.home)?;
        let mut cookies = CookieSettings::new(secure, self.same_site);
        if let Some(domain) = &self.cookie_domain {
            let domain = check_cookie_domain(domain, &public)?;
            cookies = cookies.with_domain(&domain);
        }
        let returns = crate::redirect::Returns::new(&public, cookies.domain());
        let form_page_csp = axum::http::HeaderValue::try_from(format!(
            "{}; {}",
            crate::defaults::PAGE_CSP_WITHOUT_FORM_ACTION,
            returns.form_action()
        ))
        .map_err(|_| BuildError::PublicUrl {
            url: self.public_url.clone(),
            reason: "the host cannot be written in a header",
        })?;
        self.check_limits()?;
        let secret = self.read_secret()?;
        let stores = match self.stores {
            Some(stores) => stores,
            None => Stores::open_with(&StoreOptions {
                database_url: &self.database_url,
                session_store_url: self.session_store_url.as_deref(),
                key_prefix: "latchkey",
                idle_timeout: self.idle_timeout,
                absolute_timeout: self.absolute_timeout,
            })
            .await
            .map_err(|e| BuildError::Store {
                url: crate::store::redact_url(&self.database_url),
                reason: crate::error::chain(&e),
            })?,
        };
        let stores = match self.users {
            Some(users) => Stores {
                users: Arc::new(AppUserStore(users)),
                feeds: None,
                ..stores
            },
            None => stores,
        };
        let hasher = PasswordHasher::new(self.hash_params, self.hash_threads)
            .await
            .map_err(|e| BuildError::Hasher(crate::error::chain(&e)))?;
        let settings = AuthSettings {
            origins,
            cookies,
            idle_timeout: self.idle_timeout,
            absolute_timeout: self.absolute_timeout,
            account_failures: self.account_failures,
            ip_failures: self.address_failures,
            trusted_proxies: self.trusted_proxies,
            refusal_delay: self.refusal_delay,
            feed_liveness: self.change_feed_timeout,
            login_rate: self.login_rate,
            clock: self.clock,
            paths,
            returns,
            form_page_csp,
        };
        let auth = Auth::from_parts(settings, &secret, &self.previous_secrets, stores, hasher);
        auth.learn_hash_schemes()
            .await
            .map_err(|e| BuildError::Store {
                url: crate::store::redact_url(&self.database_url),
                reason: crate::error::chain(&e),
            })?;
        if self.cleanup {
            drop(auth.spawn_cleanup());
        }
        Ok(auth)
    }

    fn check_limits(&self) -> Result<(), BuildError> {
        let zero = |what: &str| {
            Err(BuildError::Setting(format!(
                "{what} must be more than zero"
            )))
        };
        if self.login_rate == 0 {
            return zero("login_rate");
        }
        if self.account_failures.max_failures == 0 || self.address_failures.max_failures == 0 {
            return zero("max_failures");
        }
        if self.idle_timeout.is_zero() || self.absolute_timeout.is_zero() {
            return zero("a session timeout");
        }
        if self.change_feed_timeout < defaults::MIN_CHANGE_FEED_TIMEOUT {
            return Err(BuildError::Setting(
                "change_feed_timeout must be at least 40ms".into(),
            ));
        }
        for secret in self.secret.iter().chain(&self.previous_secrets) {
            if let Some(reason) = secret.weakness() {
                return Err(BuildError::Setting(reason));
            }
        }
        Ok(())
    }

    fn read_secret(&self) -> Result<ServerSecret, BuildError> {
        if let Some(secret) = &self.secret {
            return Ok(secret.clone());
        }
        let path = match (&self.secret_file, self.stores.is_some()) {
            (Some(path), _) => {
                return crate::secret::read_file(path).map_err(|reason| BuildError::SecretFile {
                    path: path.clone(),
                    reason: reason.to_string(),
                });
            }
            (None, false) => match crate::store::sqlite_path(&self.database_url) {
                Some(db) => crate::secret::path_beside(&db),
                // Nothing outlives the process, so neither need the secret.
                None if self.database_url.starts_with("memory:") => {
                    return ServerSecret::new(&ServerSecret::generate())
                        .map_err(|e| BuildError::NoSecret(e.to_string()));
                }
                None => {
                    return Err(BuildError::NoSecret(crate::store::redact_url(
                        &self.database_url,
                    )));
                }
            },
            (None, true) => return Err(BuildError::NoSecret("the stores given".into())),
        };
        crate::secret::read_or_create(&path).map_err(|reason| BuildError::SecretFile {
            path: path.clone(),
            reason: reason.to_string(),
        })
    }
}

/// The cookie domain in lower case without a leading dot, when it is a host
/// name of two labels or more (browsers refuse a cookie for a top-level
/// domain) and the https public URL is under it.
fn check_cookie_domain(domain: &str, public: &url::Url) -> Result<String, BuildError> {
    let refuse = |reason| {
        Err(BuildError::CookieDomain {
            domain: domain.to_owned(),
            reason,
        })
    };
    let name = domain
        .strip_prefix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    if !crate::host_name::is_host_name(&name) {
        return refuse(if name.contains('.') {
            "not a host name like example.com"
        } else {
            "a cookie domain needs two labels or more, like example.com"
        });
    }
    // `co.uk`, `github.io`: browsers refuse a cookie for a public suffix,
    // and a return URL could name any site under it.
    if psl::domain_str(&name).is_none() {
        return refuse(
            "a public suffix (like co.uk or github.io), shared by sites of different owners: \
             give your own domain under it",
        );
    }
    if public.scheme() != "https" {
        return refuse("a shared cookie is only sent over https: the public URL must be https");
    }
    let under = public
        .domain()
        .is_some_and(|host| crate::host_name::is_under(host, &name));
    if !under {
        return refuse("the public URL's host must be this domain or under it");
    }
    Ok(name)
}
