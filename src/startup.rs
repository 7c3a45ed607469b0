//! Start-up: configuration into a running server. `main` and the tests both
//! go through [`Application::build`].

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::Auth;
use crate::clock::{Clock, SystemClock, millis};
use crate::config::Config;
use crate::routes::{AppState, SetupToken, router};
use crate::store::{FailurePolicy, StoreOptions, Stores, redact_url};

/// Opens the stores, reads the secret and builds the [`Auth`] that the
/// server and the CLI share.
///
/// # Errors
/// When the secret or the database cannot be opened.
pub async fn open_auth(config: &Config) -> anyhow::Result<Auth> {
    open_auth_with_clock(config, Arc::new(SystemClock)).await
}

/// [`open_auth`] with a clock of the caller's (tests move time with
/// [`crate::clock::AdjustableClock`]).
///
/// # Errors
/// As [`open_auth`].
pub async fn open_auth_with_clock(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Auth> {
    auth_with(config, open_stores(config).await?, clock).await
}

async fn open_stores(config: &Config) -> anyhow::Result<Stores> {
    Stores::open_with(&StoreOptions {
        database_url: &config.database_url,
        session_store_url: config.session_store_url.as_deref(),
        key_prefix: &config.session_store_prefix,
        idle_timeout: config.idle_timeout,
        absolute_timeout: config.absolute_timeout,
    })
    .await
    .map_err(|e| match e {
        // Says which Redis itself; the database is not the one at fault.
        e @ crate::store::OpenError::Redis(_) => anyhow::Error::new(e),
        e => {
            anyhow::Error::new(e).context(format!("database {}", redact_url(&config.database_url)))
        }
    })
}

/// [`open_auth`] for administrative commands: no change feeds, no cache.
///
/// # Errors
/// As [`open_auth`].
pub async fn open_admin(config: &Config) -> anyhow::Result<Auth> {
    auth_with(
        config,
        open_stores(config).await?.without_feeds(),
        Arc::new(SystemClock),
    )
    .await
}

/// The service's [`Auth`], made as any app makes one: through
/// [`Auth::builder`], from the configuration's settings and the stores
/// opened here (the service names its Redis key prefix).
async fn auth_with(config: &Config, stores: Stores, clock: Arc<dyn Clock>) -> anyhow::Result<Auth> {
    let policy = |max_failures| FailurePolicy {
        max_failures,
        window: millis(config.login_window),
        lockout: millis(config.login_lockout),
    };
    let mut builder = Auth::builder()
        .database_url(config.database_url.clone())
        .stores(stores)
        .secret(config.load_secret()?)
        .previous_secrets(config.load_previous_secrets()?)
        .public_url(config.public_origin())
        .same_site(config.same_site)
        .idle_timeout(config.idle_timeout)
        .absolute_timeout(config.absolute_timeout)
        .account_failures(policy(config.login_max_failures))
        .address_failures(policy(config.login_ip_max_failures))
        .login_rate(config.login_rate)
        .refusal_delay(config.refusal_delay)
        .trusted_proxies(config.trusted_proxies.clone())
        .hash_params(config.hash_params)
        .hash_threads(config.hash_concurrency)
        .pages_prefix("")
        .home("/profile")
        .change_feed_timeout(config.change_feed_timeout)
        .clock(clock)
        // `Application::run` starts it, and stops it at shutdown.
        .cleanup(false);
    for origin in &config.allowed_origins {
        builder = builder.allowed_origin(origin.clone());
    }
    if let Some(domain) = &config.cookie_domain {
        builder = builder.cookie_domain(domain.clone());
    }
    Ok(builder.build().await?)
}

/// Points a loopback public URL asked for with port 0 (tests, a quick
/// try) at the address actually bound, which browsers then send as their
/// `Origin`; and tells whether the public URL is this very listener, so that
/// visitors may be redirected there.
fn settle_public_url(config: &mut Config, addr: SocketAddr) -> bool {
    if !config.public_url_is_loopback() {
        return false;
    }
    if config.bind.port() == 0 {
        let _ = config.public_url.set_ip_host(addr.ip());
        let _ = config.public_url.set_port(Some(addr.port()));
    }
    config.public_url.port_or_known_default() == Some(addr.port())
        && match config.public_url.host() {
            Some(url::Host::Ipv4(ip)) => std::net::IpAddr::V4(ip) == addr.ip(),
            Some(url::Host::Ipv6(ip)) => std::net::IpAddr::V6(ip) == addr.ip(),
            Some(url::Host::Domain(_)) => true,
            None => false,
        }
}

/// The cap on open connections, within the open-file limit (which is raised
/// toward its hard limit when that makes room), logged with the timeouts.
fn connection_limits(config: &Config) -> usize {
    let limits = &config.connections;
    let (max_connections, open_files) = crate::connections::connection_cap(limits.max_connections);
    let open_files = open_files.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    // Lowered, the cap is only said: the default asks for more than a
    // default open-file limit allows, and that is fine.
    tracing::info!(
        max_connections,
        configured = limits.max_connections,
        max_connections_per_address = limits.max_connections_per_address,
        open_file_limit = %open_files,
        header_read_timeout = %humantime::format_duration(limits.header_read_timeout),
        request_timeout = %humantime::format_duration(limits.request_timeout),
        keep_alive_timeout = %humantime::format_duration(limits.keep_alive_timeout),
        "connection limits"
    );
    max_connections
}

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    router: crate::routes::Service,
    addr: SocketAddr,
    auth: Auth,
    setup_link: Option<String>,
    public_url: url::Url,
    connections: crate::config::ConnectionLimits,
    /// `connections.max_connections` as it fits in the open-file limit.
    max_connections: usize,
    trusted_proxies: Vec<ipnet::IpNet>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Opens everything and binds the listener (port 0 picks a free port).
    ///
    /// # Errors
    /// When the configuration, the database or the address is unusable.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with a clock of the caller's.
    ///
    /// # Errors
    /// As [`Application::build`].
    pub async fn build_with_clock(
        mut config: Config,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        let addr = listener.local_addr()?;
        let public_url_is_this_listener = settle_public_url(&mut config, addr);
        if config.public_url_is_loopback() && !public_url_is_this_listener {
            tracing::warn!(public_url = %config.public_url, address = %addr,
                "the public URL is not where latchkey listens: its links (the setup link too) \
                 lead there; make sure that is a proxy of yours");
        }
        if !config.secure_cookies() {
            tracing::warn!(public_url = %config.public_url,
                "plain http on this machine: fine for trying latchkey out; for anyone else \
                 serve it over https (LATCHKEY_PUBLIC_URL=https://…), which also marks cookies Secure");
        }
        if !config.hash_params.meets_owasp_minimum() {
            let p = config.hash_params;
            tracing::warn!(
                memory_kib = p.memory_kib,
                iterations = p.iterations,
                "argon2 parameters below OWASP's minimum (19456 KiB with 2 passes, or an \
                 equal choice): stolen password hashes would be cheaper to crack"
            );
        }
        let auth = open_auth_with_clock(&config, clock).await?;
        tracing::info!(
            "database: {}",
            crate::store::redact_url(&config.database_url)
        );
        let setup = if auth.accounts().any_users().await? {
            SetupToken::closed()
        } else {
            SetupToken::generate()
        };
        let setup_link = setup.reveal().map(|token| {
            let mut url = config.public_url.clone();
            url.set_path("/setup");
            url.set_query(Some(&format!("token={token}")));
            url.to_string()
        });
        if let Some(link) = &setup_link {
            tracing::warn!(
                "no user exists yet. Open this one-time link to create the first administrator: {link}"
            );
        }
        warn_of_forward_auth_mistakes(&config, &auth);
        let router = router(
            AppState {
                auth: auth.clone(),
                setup: Arc::new(setup),
                public_url_is_this_listener,
                access: Arc::new(config.access.clone()),
            },
            config.connections.request_timeout,
        );
        let max_connections = connection_limits(&config);
        Ok(Self {
            listener,
            router,
            addr,
            auth,
            setup_link,
            public_url: config.public_url,
            connections: config.connections,
            max_connections,
            trusted_proxies: config.trusted_proxies,
        })
    }

    /// The address actually bound.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The login this server runs (for inspection by tests and embedders).
    #[must_use]
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The first-admin link, when the database had no users at start-up.
    #[must_use]
    pub fn setup_link(&self) -> Option<&str> {
        self.setup_link.as_deref()
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    ///
    /// # Errors
    /// When serving fails.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let cleanup = self.auth.spawn_cleanup();
        let auth = self.auth.clone();
        if self.setup_link.is_some() {
            tracing::info!(address = %self.addr,
                "latchkey listening; open the one-time setup link above to create the first administrator");
        } else {
            tracing::info!(address = %self.addr, "latchkey listening; open {}", self.public_url);
        }
        let result = crate::connections::serve(
            self.listener,
            self.router,
            self.connections,
            self.max_connections,
            self.trusted_proxies,
            shutdown,
        )
        .await;
        cleanup.abort();
        tracing::info!(
            "stopped; session look-ups that went to the store since start: {}",
            auth.cache().misses()
        );
        result
    }

    /// Serves until the process is stopped.
    ///
    /// # Errors
    /// When serving fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(std::future::pending()).await
    }
}

/// Forward-auth set up so that it cannot work as meant, said at start-up
/// with the setting that fixes it: no trusted proxy, or a rule for a host
/// the session cookie never reaches (its visitors would be sent to sign in
/// on every visit, however often they do).
fn warn_of_forward_auth_mistakes(config: &Config, auth: &Auth) {
    // Forward-auth means a proxy in front; one not named here makes every
    // visitor's address the proxy's.
    let behind_a_proxy = !config.access.rules.is_empty() || config.cookie_domain.is_some();
    if behind_a_proxy && config.trusted_proxies.is_empty() {
        tracing::warn!(
            "LATCHKEY_TRUSTED_PROXIES is empty: behind a proxy every visitor has the proxy's \
             address, so sign-in limits per address would count everyone together; name the \
             proxy's address there"
        );
    }
    let returns = &auth.settings().returns;
    for (rule, host) in config.access.named_hosts() {
        if !returns.reaches(host) {
            tracing::warn!(
                rule,
                host,
                "access rule {rule} names {host}, which latchkey's session cookie does not reach: \
                 its visitors would be asked to sign in again and again. Serve the app on \
                 latchkey's own host name, or set LATCHKEY_COOKIE_DOMAIN to a domain both are under"
            );
        }
    }
}
