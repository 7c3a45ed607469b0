//! Configuration: defaults, then an optional TOML file, then `LATCHKEY_*`
//! environment variables. Every bad setting stops start-up with a message
//! that names it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format as _, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::defaults;
use crate::password::HashParams;
use crate::secret::ServerSecret;
use crate::session::SameSite;

/// Prefix of every environment variable latchkey reads.
pub const ENV_PREFIX: &str = "LATCHKEY_";

/// The settings as declared: their names are the file's keys and, upper-cased
/// behind [`ENV_PREFIX`], the environment's variables; each is read by the
/// function named beside it, whose message says what was expected. Missing
/// ones take the defaults (shared with [`crate::Auth::builder`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Raw {
    #[serde(deserialize_with = "read::address")]
    bind: SocketAddr,
    #[serde(deserialize_with = "read::url")]
    public_url: url::Url,
    #[serde(deserialize_with = "read::origins")]
    allowed_origins: Vec<String>,
    database_url: String,
    session_store_url: Option<String>,
    session_store_prefix: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    previous_secrets: Option<String>,
    previous_secrets_file: Option<PathBuf>,
    #[serde(deserialize_with = "read::duration")]
    idle_timeout: Duration,
    #[serde(deserialize_with = "read::duration")]
    absolute_timeout: Duration,
    #[serde(deserialize_with = "read::whole")]
    login_max_failures: u32,
    #[serde(deserialize_with = "read::duration")]
    login_lockout: Duration,
    #[serde(deserialize_with = "read::duration")]
    login_window: Duration,
    #[serde(deserialize_with = "read::whole")]
    login_ip_max_failures: u32,
    #[serde(deserialize_with = "read::whole")]
    login_rate: u32,
    #[serde(deserialize_with = "read::delay")]
    refusal_delay: Duration,
    #[serde(deserialize_with = "read::duration")]
    change_feed_timeout: Duration,
    #[serde(deserialize_with = "read::networks")]
    trusted_proxies: Vec<IpNet>,
    #[serde(deserialize_with = "read::same_site")]
    same_site: SameSite,
    cookie_domain: Option<String>,
    #[serde(deserialize_with = "read::whole")]
    argon2_memory_kib: u32,
    #[serde(deserialize_with = "read::whole")]
    argon2_iterations: u32,
    #[serde(deserialize_with = "read::whole")]
    argon2_parallelism: u32,
    #[serde(deserialize_with = "read::whole")]
    hash_concurrency: usize,
    #[serde(deserialize_with = "read::log_format")]
    log_format: LogFormat,
    #[serde(deserialize_with = "read::duration")]
    header_read_timeout: Duration,
    #[serde(deserialize_with = "read::duration")]
    request_timeout: Duration,
    #[serde(deserialize_with = "read::duration")]
    keep_alive_timeout: Duration,
    #[serde(deserialize_with = "read::whole")]
    max_connections: usize,
    #[serde(deserialize_with = "read::whole")]
    max_connections_per_address: usize,
    /// The file's `[access]` table; its `default` is also
    /// `LATCHKEY_ACCESS_DEFAULT`.
    access: AccessText,
}

/// Forward-auth's access rules as written (see [`crate::access`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AccessText {
    default: String,
    rules: Vec<crate::access::RuleText>,
}

impl Default for AccessText {
    fn default() -> Self {
        Self {
            default: "signed_in".into(),
            rules: Vec::new(),
        }
    }
}

impl Default for Raw {
    fn default() -> Self {
        let hash = HashParams::default();
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: url::Url::parse(defaults::PUBLIC_URL)
                .unwrap_or_else(|_| unreachable!("the default public URL parses")),
            allowed_origins: Vec::new(),
            database_url: defaults::DATABASE_URL.into(),
            session_store_url: None,
            session_store_prefix: "latchkey".into(),
            secret: None,
            secret_file: None,
            previous_secrets: None,
            previous_secrets_file: None,
            idle_timeout: defaults::IDLE_TIMEOUT,
            absolute_timeout: defaults::ABSOLUTE_TIMEOUT,
            login_max_failures: defaults::ACCOUNT_MAX_FAILURES,
            login_lockout: defaults::LOGIN_LOCKOUT,
            login_window: defaults::LOGIN_WINDOW,
            login_ip_max_failures: defaults::ADDRESS_MAX_FAILURES,
            login_rate: defaults::LOGIN_RATE,
            refusal_delay: defaults::REFUSAL_DELAY,
            change_feed_timeout: crate::store::feed::DEFAULT_LIVENESS,
            trusted_proxies: Vec::new(),
            same_site: SameSite::Lax,
            cookie_domain: None,
            argon2_memory_kib: hash.memory_kib,
            argon2_iterations: hash.iterations,
            argon2_parallelism: hash.parallelism,
            hash_concurrency: 0,
            log_format: LogFormat::Text,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_address: 256,
            access: AccessText::default(),
        }
    }
}

/// How each setting is read from what was given (a TOML value from the
/// file, a string from the environment), with a message that names what
/// was expected; serde adds nothing to it, and [`from_figment`] the setting.
mod read {
    use std::net::{IpAddr, SocketAddr};
    use std::time::Duration;

    use ipnet::IpNet;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};

    use super::LogFormat;
    use crate::session::SameSite;

    /// A value as given, before it is read as what the setting needs.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Text(String),
        Whole(i64),
        Number(f64),
        Flag(bool),
        List(Vec<String>),
    }

    impl Given {
        fn text(self) -> String {
            match self {
                Self::Text(text) => text.trim().to_owned(),
                Self::Whole(n) => n.to_string(),
                Self::Number(n) => n.to_string(),
                Self::Flag(b) => b.to_string(),
                Self::List(items) => items.join(","),
            }
        }
    }

    /// Reads the value given as text with `parse`, whose error is the message.
    fn parsed<'de, D: Deserializer<'de>, T>(
        d: D,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, D::Error> {
        let given = Given::deserialize(d)
            .map_err(|_| D::Error::custom("expected text, a number or a list of text"))?;
        parse(&given.text()).map_err(D::Error::custom)
    }

    pub(super) fn address<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        parsed(d, |text| {
            text.parse()
                .map_err(|_| format!("{text:?} is not an address like 127.0.0.1:8080"))
        })
    }

    pub(super) fn url<'de, D: Deserializer<'de>>(d: D) -> Result<url::Url, D::Error> {
        parsed(d, |text| {
            url::Url::parse(text).map_err(|e| format!("{text:?}: {e}"))
        })
    }

    /// A duration like `30m`, longer than zero.
    pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parsed(d, |text| {
            let d = humantime::parse_duration(text)
                .map_err(|e| format!("{text:?} is not a duration like 30m, 12h or 2s ({e})"))?;
            if d.is_zero() {
                return Err("must be longer than zero".to_owned());
            }
            Ok(d)
        })
    }

    /// A duration like `1s`, or `0` for none.
    pub(super) fn delay<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parsed(d, |text| {
            if text == "0" {
                return Ok(Duration::ZERO);
            }
            humantime::parse_duration(text)
                .map_err(|e| format!("{text:?} is not a duration like 1s or 500ms ({e})"))
        })
    }

    /// A whole number, not negative.
    pub(super) fn whole<'de, D: Deserializer<'de>, T: std::str::FromStr>(
        d: D,
    ) -> Result<T, D::Error> {
        parsed(d, |text| {
            text.parse()
                .map_err(|_| format!("{text:?} is not a whole number"))
        })
    }

    /// Origins like `https://www.example.com`, as a TOML list or separated
    /// by commas.
    pub(super) fn origins<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        parsed(d, |text| {
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| {
                    crate::csrf::Origins::parse(item)
                        .map_err(|reason| format!("{item:?}: {reason}"))
                })
                .collect()
        })
    }

    /// IP addresses and CIDR ranges, as a TOML list or separated by commas.
    pub(super) fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
        parsed(d, |text| {
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| {
                    item.parse::<IpNet>()
                        .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| format!("{item:?} is not an IP address or CIDR range"))
                })
                .collect()
        })
    }

    pub(super) fn same_site<'de, D: Deserializer<'de>>(d: D) -> Result<SameSite, D::Error> {
        parsed(d, |text| match text.to_ascii_lowercase().as_str() {
            "lax" => Ok(SameSite::Lax),
            "strict" => Ok(SameSite::Strict),
            _ => Err(format!("{text:?} is not lax or strict")),
        })
    }

    pub(super) fn log_format<'de, D: Deserializer<'de>>(d: D) -> Result<LogFormat, D::Error> {
        parsed(d, |text| match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("{text:?} is not text or json")),
        })
    }
}

/// The settings' names, as serde knows them from [`Raw`]: the file's keys,
/// and the environment's variables behind [`ENV_PREFIX`]. Read once by
/// asking `Raw`'s `Deserialize` for the fields it wants.
fn setting_names() -> &'static [&'static str] {
    use serde::de::{Error as _, Visitor, value::Error};

    /// A deserializer that only learns the fields of the struct asked for.
    struct Fields<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("only a struct's field names are read"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Error> {
            *self.0 = fields;
            Err(Error::custom("field names read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: &'static [&'static str] = &[];
        let _ = Raw::deserialize(Fields(&mut names));
        // The `[access]` table has one setting of its own in the environment.
        names
            .iter()
            .map(|&name| {
                if name == "access" {
                    "access_default"
                } else {
                    name
                }
            })
            .collect()
    })
}

/// A figment error as a [`ConfigError`] that names the setting, in the file
/// and in the environment, and says the cause once.
fn from_figment(e: figment::Error) -> ConfigError {
    use figment::error::Kind;
    match (&e.kind, e.path.last()) {
        // A rule's field: name its place in the table, not only its key.
        (kind, Some(_)) if e.path.first().is_some_and(|p| p == "access") => {
            ConfigError::Access(format!("{}: {kind}", e.path.join(".")))
        }
        (Kind::UnknownField(key, _), _) => ConfigError::Unknown(key.clone()),
        (Kind::Message(reason), Some(setting)) => invalid(setting, reason.clone()),
        (kind, Some(setting)) => invalid(setting, kind.to_string()),
        (_, None) => ConfigError::Read(Box::new(e)),
    }
}

/// Where the server secret comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// Given directly (`LATCHKEY_SECRET` or `secret` in the file).
    Given(ServerSecret),
    /// Read from a file (`LATCHKEY_SECRET_FILE`).
    File(PathBuf),
    /// Not configured: generated once into this file beside the SQLite database.
    Generated(PathBuf),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event.
    Json,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// The URL people use to reach the service.
    pub public_url: url::Url,
    /// Further origins the service is reached at, whose pages' forms are
    /// accepted as its own.
    pub allowed_origins: Vec<String>,
    /// `sqlite://PATH`, `postgres://…` or `memory:`.
    pub database_url: String,
    /// Redis URL for sessions and failure counters, if any.
    pub session_store_url: Option<String>,
    /// Namespace of latchkey's Redis keys.
    pub session_store_prefix: String,
    /// Where the server secret comes from.
    pub secret: SecretSource,
    /// Earlier secrets whose cookies and CSRF tokens are still accepted
    /// (and re-issued under the current one).
    pub previous_secrets: Vec<ServerSecret>,
    /// A file of further earlier secrets, one per line.
    pub previous_secrets_file: Option<PathBuf>,
    /// Session idle timeout.
    pub idle_timeout: Duration,
    /// Session absolute timeout.
    pub absolute_timeout: Duration,
    /// Failed logins per account within `login_window` that lock it.
    pub login_max_failures: u32,
    /// How long a lock lasts.
    pub login_lockout: Duration,
    /// How far back failures count.
    pub login_window: Duration,
    /// Failed logins per client address within `login_window` that lock it.
    pub login_ip_max_failures: u32,
    /// How long a refused sign-in (throttled or over the per-address
    /// share) waits before it is answered.
    pub refusal_delay: Duration,
    /// How long a change feed may stay silent (its heartbeats not coming
    /// back) before the session cache is bypassed.
    pub change_feed_timeout: Duration,
    /// Sign-in and setup requests per client address and minute, counted
    /// in memory by each instance; more get 429 before any store access.
    pub login_rate: u32,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Session cookie `SameSite`.
    pub same_site: SameSite,
    /// The domain the session cookie is shared under (forward-auth across
    /// subdomains); `None` keeps it to the public URL's host.
    pub cookie_domain: Option<String>,
    /// argon2id parameters for new hashes.
    pub hash_params: HashParams,
    /// How many password hashes run at once (default: the number of cores).
    pub hash_concurrency: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// How the server treats connections: timeouts and caps.
    pub connections: ConnectionLimits,
    /// Who forward-auth lets through to which URL.
    pub access: crate::access::AccessRules,
}

/// What one connection may take of the server. Every limit is there because
/// a connection costs the server a file descriptor and memory whether or not
/// it ever sends a request: without them a few thousand idle or half-sent
/// connections (slowloris) shut everybody else out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From a request's first byte to the end of its headers. A real client
    /// sends its (at most a few KiB of) headers in one go.
    pub header_read_timeout: Duration,
    /// From the end of the headers to the answer, the body included; a
    /// request past it is answered 408.
    pub request_timeout: Duration,
    /// How long a connection may wait, idle, for its next request.
    pub keep_alive_timeout: Duration,
    /// Open connections at most. The server lowers it below the process's
    /// open-file limit (see [`crate::startup`]) so that it never runs out of
    /// file descriptors.
    pub max_connections: usize,
    /// Open connections at most from one client address (IPv6: one /64).
    /// Peers listed in `trusted_proxies` are exempt: they carry many clients.
    pub max_connections_per_address: usize,
}

/// A setting that stops start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or the environment could not be read into settings.
    #[error("{0}")]
    Read(Box<figment::Error>),
    /// The `[access]` table (or `LATCHKEY_ACCESS_DEFAULT`) is wrong.
    #[error("invalid access rules: {0}")]
    Access(String),
    /// One setting is wrong.
    #[error("invalid setting {setting} ({env}): {reason}")]
    Invalid {
        /// The setting's name in the file.
        setting: String,
        /// The matching environment variable.
        env: String,
        /// What is wrong.
        reason: String,
    },
    /// The configuration file has a key that is no setting (a typo).
    #[error("unknown setting {0:?} in the configuration file")]
    Unknown(String),
    /// The secret file could not be read or written.
    #[error("secret file {path}: {source}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn invalid(setting: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_owned(),
        env: format!("{ENV_PREFIX}{}", setting.to_uppercase()),
        reason: reason.into(),
    }
}

fn at_least_one<T: Copy + PartialEq + From<u8>>(setting: &str, value: T) -> Result<T, ConfigError> {
    if value == T::from(0) {
        return Err(invalid(setting, "must be at least 1"));
    }
    Ok(value)
}

impl Config {
    /// Loads defaults, then `file` (if given), then the process environment.
    ///
    /// # Errors
    /// The first bad setting, named.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment (for tests).
    ///
    /// # Errors
    /// The first bad setting, named.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid(
                    "config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // Values are given to figment as the strings they are, never guessed
        // as TOML, so a secret or URL is taken exactly as written; each
        // setting's reader makes of it what the setting needs.
        for (key, value) in env {
            let Some(name) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            if name == "config" {
                continue;
            }
            // The one variable for a setting inside a table of the file.
            if name == "access_default" {
                figment = figment.merge(Serialized::default("access.default", value));
                continue;
            }
            if !setting_names().contains(&name.as_str()) {
                tracing::warn!(variable = %key, "unknown latchkey environment variable ignored");
                continue;
            }
            figment = figment.merge(Serialized::default(&name, value));
        }
        let raw: Raw = figment.extract().map_err(from_figment)?;
        Self::validate(raw)
    }

    fn validate(raw: Raw) -> Result<Self, ConfigError> {
        let bind = raw.bind;
        let public_url = raw.public_url;
        match public_url.scheme() {
            "https" => {}
            "http" => {
                if !crate::redirect::is_this_machine(&public_url) {
                    return Err(invalid(
                        "public_url",
                        "plain http is only allowed for a loopback address (127.0.0.1, ::1, localhost); \
                         serve latchkey over https",
                    ));
                }
                if !bind.ip().is_loopback() {
                    return Err(invalid(
                        "bind",
                        format!(
                            "{bind} is reachable from other machines, but the public URL is plain http; \
                             bind to a loopback address or use an https public URL"
                        ),
                    ));
                }
            }
            other => {
                return Err(invalid(
                    "public_url",
                    format!("scheme {other:?} is not http or https"),
                ));
            }
        }
        let database_url = raw.database_url.trim().to_owned();
        let session_store_url = raw
            .session_store_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned);
        if let Some(url) = &session_store_url {
            let scheme = url.split("://").next().unwrap_or("");
            if !matches!(
                scheme,
                "redis" | "rediss" | "redis-cluster" | "redis-sentinel" | "redis+unix"
            ) {
                return Err(invalid(
                    "session_store_url",
                    "expected redis://, rediss://, redis-cluster:// or redis-sentinel://",
                ));
            }
        }
        let prefix = raw.session_store_prefix.trim();
        if prefix.is_empty() || prefix.contains(['{', '}', ' ']) {
            return Err(invalid(
                "session_store_prefix",
                "must be non-empty, without braces or spaces",
            ));
        }
        // The store is named before anything that depends on it (the secret).
        if !["sqlite:", "postgres://", "postgresql://", "memory:"]
            .iter()
            .any(|scheme| database_url.starts_with(scheme))
        {
            return Err(invalid(
                "database_url",
                "unknown database URL scheme; expected sqlite://PATH, postgres://… or memory:",
            ));
        }
        let previous_secrets = raw
            .previous_secrets
            .as_deref()
            .unwrap_or("")
            .split([',', '\n'])
            .filter(|s| !s.trim().is_empty())
            .map(|s| checked_secret(s, "previous_secrets"))
            .collect::<Result<Vec<_>, _>>()?;
        let secret = match (&raw.secret, &raw.secret_file) {
            (Some(s), _) => SecretSource::Given(checked_secret(s, "secret")?),
            (None, Some(path)) => SecretSource::File(path.clone()),
            (None, None) => match crate::store::sqlite_path(&database_url) {
                Some(db) => SecretSource::Generated(crate::secret::path_beside(&db)),
                None if database_url.starts_with("memory:") => SecretSource::Given(
                    ServerSecret::new(&ServerSecret::generate())
                        .map_err(|e| invalid("secret", e.to_string()))?,
                ),
                None => {
                    return Err(invalid(
                        "secret",
                        format!(
                            "set LATCHKEY_SECRET or LATCHKEY_SECRET_FILE: several instances sharing a \
                             database must share one secret (for example: {})",
                            ServerSecret::generate()
                        ),
                    ));
                }
            },
        };
        let change_feed_timeout = raw.change_feed_timeout;
        if change_feed_timeout < crate::defaults::MIN_CHANGE_FEED_TIMEOUT {
            return Err(invalid(
                "change_feed_timeout",
                "must be at least 40ms (heartbeats go out four times per timeout)",
            ));
        }
        at_least_one("login_max_failures", raw.login_max_failures)?;
        at_least_one("login_ip_max_failures", raw.login_ip_max_failures)?;
        at_least_one("login_rate", raw.login_rate)?;
        let hash_params = HashParams {
            memory_kib: raw.argon2_memory_kib,
            iterations: raw.argon2_iterations,
            parallelism: raw.argon2_parallelism,
        };
        hash_params.validate().map_err(|e| {
            invalid(
                "argon2_memory_kib",
                format!("argon2 parameters refused: {e}"),
            )
        })?;
        let hash_concurrency = if raw.hash_concurrency == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        } else {
            raw.hash_concurrency
        };
        let connections = ConnectionLimits {
            header_read_timeout: raw.header_read_timeout,
            request_timeout: raw.request_timeout,
            keep_alive_timeout: raw.keep_alive_timeout,
            max_connections: at_least_one("max_connections", raw.max_connections)?,
            max_connections_per_address: at_least_one(
                "max_connections_per_address",
                raw.max_connections_per_address,
            )?,
        };
        Ok(Self {
            bind,
            public_url,
            allowed_origins: raw.allowed_origins,
            database_url,
            session_store_url,
            session_store_prefix: prefix.to_owned(),
            secret,
            previous_secrets,
            previous_secrets_file: raw.previous_secrets_file.clone(),
            idle_timeout: raw.idle_timeout,
            absolute_timeout: raw.absolute_timeout,
            login_max_failures: raw.login_max_failures,
            login_lockout: raw.login_lockout,
            login_window: raw.login_window,
            login_ip_max_failures: raw.login_ip_max_failures,
            change_feed_timeout,
            refusal_delay: raw.refusal_delay,
            login_rate: raw.login_rate,
            trusted_proxies: raw.trusted_proxies,
            same_site: raw.same_site,
            cookie_domain: raw.cookie_domain.filter(|d| !d.is_empty()),
            hash_params,
            hash_concurrency,
            log_format: raw.log_format,
            connections,
            access: crate::access::AccessRules::parse(&raw.access.default, &raw.access.rules)
                .map_err(ConfigError::Access)?,
        })
    }

    /// The public URL's origin (`scheme://host[:port]`), as browsers send it.
    #[must_use]
    pub fn public_origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }

    /// Whether the public URL is plain http on this machine (a loopback
    /// address or `localhost`): a development setup with no proxy in front.
    #[must_use]
    pub fn public_url_is_loopback(&self) -> bool {
        self.public_url.scheme() == "http" && crate::redirect::is_this_machine(&self.public_url)
    }

    /// Whether cookies must be `Secure` (the public URL is https).
    #[must_use]
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// Reads or creates the server secret. A generated one is written with
    /// mode 0600 and announced in the log.
    ///
    /// # Errors
    /// When a secret file cannot be read or written, or is too short.
    pub fn load_secret(&self) -> Result<ServerSecret, ConfigError> {
        match &self.secret {
            SecretSource::Given(s) => Ok(s.clone()),
            SecretSource::File(path) => crate::secret::read_file(path)
                .map_err(|e| secret_file_error(path, "secret_file", e)),
            SecretSource::Generated(path) => crate::secret::read_or_create(path)
                .map_err(|e| secret_file_error(path, "secret_file", e)),
        }
    }
}

/// A secret file's error, naming the file or the setting.
fn secret_file_error(
    path: &Path,
    setting: &'static str,
    e: crate::secret::FileError,
) -> ConfigError {
    match e {
        crate::secret::FileError::Io(source) => ConfigError::SecretFile {
            path: path.to_owned(),
            source,
        },
        crate::secret::FileError::Weak(reason) => {
            invalid(setting, format!("{}: {reason}", path.display()))
        }
    }
}

impl Config {
    /// Every previous secret: those given directly and those in the file.
    ///
    /// # Errors
    /// When the file cannot be read or holds an unusable secret.
    pub fn load_previous_secrets(&self) -> Result<Vec<ServerSecret>, ConfigError> {
        let mut all = self.previous_secrets.clone();
        if let Some(path) = &self.previous_secrets_file {
            let text = crate::secret::read_private(path)
                .map_err(|e| secret_file_error(path, "previous_secrets_file", e))?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                all.push(checked_secret(line, "previous_secrets_file")?);
            }
        }
        Ok(all)
    }
}

/// A configured secret; see [`crate::secret::checked`].
fn checked_secret(text: &str, setting: &'static str) -> Result<ServerSecret, ConfigError> {
    crate::secret::checked(text).map_err(|reason| invalid(setting, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::load_from(None, env(&[])).expect("defaults load");
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public_origin(), "http://127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://latchkey.db");
        assert_eq!(c.idle_timeout, Duration::from_secs(30 * 60));
        assert_eq!(c.absolute_timeout, Duration::from_secs(12 * 3600));
        assert_eq!(c.login_max_failures, 5);
        assert_eq!(c.login_lockout, Duration::from_secs(15 * 60));
        assert_eq!(c.login_ip_max_failures, 50);
        assert!(
            matches!(c.secret, SecretSource::Generated(ref p) if p == Path::new("latchkey.db.secret"))
        );
        assert_eq!(c.hash_params, HashParams::default());
        assert_eq!(
            c.connections,
            ConnectionLimits {
                header_read_timeout: Duration::from_secs(10),
                request_timeout: Duration::from_secs(30),
                keep_alive_timeout: Duration::from_secs(60),
                max_connections: 10_000,
                max_connections_per_address: 256,
            }
        );
    }

    #[test]
    fn connection_limits_come_from_file_and_environment() {
        let c = load_with_file(
            "header_read_timeout = \"3s\"\nmax_connections = 500\n",
            &[
                ("LATCHKEY_REQUEST_TIMEOUT", "1m"),
                ("LATCHKEY_KEEP_ALIVE_TIMEOUT", "750ms"),
                ("LATCHKEY_MAX_CONNECTIONS_PER_ADDRESS", " 8 "),
            ],
        )
        .expect("loads");
        assert_eq!(c.connections.header_read_timeout, Duration::from_secs(3));
        assert_eq!(c.connections.request_timeout, Duration::from_secs(60));
        assert_eq!(c.connections.keep_alive_timeout, Duration::from_millis(750));
        assert_eq!(c.connections.max_connections, 500);
        assert_eq!(c.connections.max_connections_per_address, 8);
    }

    #[test]
    fn bad_connection_limits_name_themselves() {
        for (var, value) in [
            ("LATCHKEY_HEADER_READ_TIMEOUT", "0s"),
            ("LATCHKEY_HEADER_READ_TIMEOUT", "forever"),
            ("LATCHKEY_REQUEST_TIMEOUT", "-1s"),
            ("LATCHKEY_KEEP_ALIVE_TIMEOUT", "0"),
            ("LATCHKEY_MAX_CONNECTIONS", "0"),
            ("LATCHKEY_MAX_CONNECTIONS", "lots"),
            ("LATCHKEY_MAX_CONNECTIONS", "-5"),
            ("LATCHKEY_MAX_CONNECTIONS_PER_ADDRESS", "0"),
        ] {
            let err = Config::load_from(None, env(&[(var, value)]))
                .expect_err(var)
                .to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }

    /// Loads with a configuration file of these contents.
    fn load_with_file(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("latchkey.toml");
        std::fs::write(&file, toml).expect("write");
        Config::load_from(Some(&file), env(vars))
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = load_with_file(
            "idle_timeout = \"5m\"\nlogin_max_failures = 3\nbind = \"127.0.0.1:9000\"\n",
            &[
                ("LATCHKEY_IDLE_TIMEOUT", "2s"),
                ("LATCHKEY_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1"),
            ],
        )
        .expect("loads");
        assert_eq!(c.idle_timeout, Duration::from_secs(2));
        assert_eq!(c.login_max_failures, 3);
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(c.trusted_proxies.len(), 2);
    }

    #[test]
    fn bad_settings_name_themselves() {
        for (var, value, needle) in [
            ("LATCHKEY_IDLE_TIMEOUT", "soon", "LATCHKEY_IDLE_TIMEOUT"),
            ("LATCHKEY_BIND", "nowhere", "LATCHKEY_BIND"),
            (
                "LATCHKEY_PUBLIC_URL",
                "http://example.com",
                "LATCHKEY_PUBLIC_URL",
            ),
            ("LATCHKEY_SECRET", "too-short", "LATCHKEY_SECRET"),
            (
                "LATCHKEY_LOGIN_MAX_FAILURES",
                "many",
                "LATCHKEY_LOGIN_MAX_FAILURES",
            ),
            (
                "LATCHKEY_LOGIN_MAX_FAILURES",
                "0",
                "LATCHKEY_LOGIN_MAX_FAILURES",
            ),
            (
                "LATCHKEY_TRUSTED_PROXIES",
                "proxy.local",
                "LATCHKEY_TRUSTED_PROXIES",
            ),
            (
                "LATCHKEY_ABSOLUTE_TIMEOUT",
                "0s",
                "LATCHKEY_ABSOLUTE_TIMEOUT",
            ),
        ] {
            let err = Config::load_from(None, env(&[(var, value)]))
                .expect_err(var)
                .to_string();
            assert!(err.contains(needle), "{var}={value}: {err}");
        }
    }

    #[test]
    fn the_redis_session_store_is_configured_by_environment() {
        let c = Config::load_from(
            None,
            env(&[
                ("LATCHKEY_SESSION_STORE_URL", "redis://127.0.0.1:6379/"),
                ("LATCHKEY_SESSION_STORE_PREFIX", "site-a"),
            ]),
        )
        .expect("loads");
        assert_eq!(
            c.session_store_url.as_deref(),
            Some("redis://127.0.0.1:6379/")
        );
        assert_eq!(c.session_store_prefix, "site-a");
        let err = Config::load_from(
            None,
            env(&[("LATCHKEY_SESSION_STORE_URL", "memcached://x")]),
        )
        .expect_err("bad scheme")
        .to_string();
        assert!(err.contains("LATCHKEY_SESSION_STORE_URL"), "{err}");
    }

    #[test]
    fn every_documented_variable_is_known() {
        let readme = include_str!("../README.md");
        assert!(setting_names().len() > 20, "{:?}", setting_names());
        for name in setting_names() {
            let variable = format!("LATCHKEY_{}", name.to_uppercase());
            assert!(
                readme.contains(&format!("`{variable}`")),
                "README lacks {variable}"
            );
        }
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let err = load_with_file("idle_timout = \"5m\"\n", &[])
            .expect_err("typo")
            .to_string();
        assert!(err.contains("idle_timout"), "{err}");
    }

    #[test]
    fn access_rules_are_read_from_the_file_and_checked_by_number() {
        let rules = "[access]\ndefault = \"deny\"\n\n[[access.rules]]\npaths = [\"/public/*\"]\n\
                     policy = \"public\"\n";
        let c = load_with_file(rules, &[]).expect("valid rules");
        assert_eq!(c.access.default, crate::access::Policy::Deny);
        assert_eq!(c.access.rules.len(), 1);
        let c = load_with_file(rules, &[("LATCHKEY_ACCESS_DEFAULT", "signed_in")])
            .expect("the environment's default");
        assert_eq!(c.access.default, crate::access::Policy::SignedIn);
        for (text, expected) in [
            (
                "[[access.rules]]\npolicy = \"public\"\n[[access.rules]]\npolicy = \"open\"\n",
                "access rule 2: policy \"open\" is not one of",
            ),
            (
                "[[access.rules]]\npolicy = \"roles\"\n",
                "access rule 1: policy \"roles\" needs roles",
            ),
            ("[[access.rules]]\npolcy = \"public\"\n", "polcy"),
            (
                "[[access.rules]]\nhosts = \"a.example.com\"\npolicy = \"public\"\n",
                "access.rules.0.hosts",
            ),
            (
                "[access]\ndefault = \"public\"\n",
                "LATCHKEY_ACCESS_DEFAULT",
            ),
        ] {
            let err = load_with_file(text, &[]).expect_err(text).to_string();
            assert!(err.starts_with("invalid access rules: "), "{err}");
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn plain_http_may_not_listen_beyond_loopback() {
        let err = Config::load_from(None, env(&[("LATCHKEY_BIND", "0.0.0.0:8080")]))
            .expect_err("http on all interfaces")
            .to_string();
        assert!(err.contains("LATCHKEY_BIND"), "{err}");
        Config::load_from(
            None,
            env(&[
                ("LATCHKEY_BIND", "0.0.0.0:8080"),
                ("LATCHKEY_PUBLIC_URL", "https://login.example.com"),
            ]),
        )
        .expect("behind a TLS proxy");
    }

    #[test]
    fn https_and_loopback_http_are_accepted() {
        for url in [
            "https://login.example.com",
            "http://localhost:8080",
            "http://[::1]:8080",
        ] {
            Config::load_from(None, env(&[("LATCHKEY_PUBLIC_URL", url)])).expect(url);
        }
    }

    #[test]
    fn a_shared_database_needs_an_explicit_secret() {
        let err = Config::load_from(
            None,
            env(&[("LATCHKEY_DATABASE_URL", "postgres://localhost/x")]),
        )
        .expect_err("no secret")
        .to_string();
        assert!(err.contains("LATCHKEY_SECRET"), "{err}");
    }

    #[test]
    fn a_generated_secret_is_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("x.db");
        let url = format!("sqlite://{}", db.display());
        let c = Config::load_from(None, env(&[("LATCHKEY_DATABASE_URL", &url)])).expect("loads");
        c.load_secret().expect("generated");
        let path = dir.path().join("x.db.secret");
        let first = std::fs::read_to_string(&path).expect("written");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        c.load_secret().expect("reused");
        assert_eq!(first, std::fs::read_to_string(&path).expect("still there"));
    }

    #[cfg(unix)]
    #[test]
    fn secret_files_that_others_may_read_are_refused_until_made_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let mode = |path: &Path, mode| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        let secret = dir.path().join("secret");
        std::fs::write(&secret, ServerSecret::generate()).expect("write");
        let previous = dir.path().join("previous");
        std::fs::write(&previous, format!("{}\n", ServerSecret::generate())).expect("write");
        mode(&secret, 0o644);
        mode(&previous, 0o640);
        let c = Config::load_from(
            None,
            env(&[
                ("LATCHKEY_SECRET_FILE", &secret.display().to_string()),
                (
                    "LATCHKEY_PREVIOUS_SECRETS_FILE",
                    &previous.display().to_string(),
                ),
            ]),
        )
        .expect("loads");
        let err = c.load_secret().expect_err("world-readable").to_string();
        assert!(
            err.contains("LATCHKEY_SECRET_FILE") && err.contains("chmod 600"),
            "{err}"
        );
        let err = c
            .load_previous_secrets()
            .expect_err("group-readable")
            .to_string();
        assert!(
            err.contains("LATCHKEY_PREVIOUS_SECRETS_FILE") && err.contains("chmod 600"),
            "{err}"
        );
        mode(&secret, 0o600);
        mode(&previous, 0o400);
        c.load_secret().expect("private now");
        assert_eq!(c.load_previous_secrets().expect("private now").len(), 1);
    }

    #[test]
    fn the_file_takes_lists_and_numbers_and_the_environment_text() {
        let c = load_with_file(
            "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]\nlogin_rate = 7\nsame_site = \"strict\"\n",
            &[("LATCHKEY_LOGIN_MAX_FAILURES", "9"), ("LATCHKEY_LOG_FORMAT", "json")],
        )
        .expect("loads");
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.login_rate, 7);
        assert_eq!(c.same_site, SameSite::Strict);
        assert_eq!(c.login_max_failures, 9);
        assert_eq!(c.log_format, LogFormat::Json);
        let err = load_with_file("bind = [1, 2]\n", &[])
            .expect_err("a list")
            .to_string();
        assert!(
            err.contains("LATCHKEY_BIND") && err.contains("expected text"),
            "{err}"
        );
    }

    #[test]
    fn further_origins_are_read_as_origins_and_bad_ones_named() {
        let c = Config::load_from(
            None,
            env(&[(
                "LATCHKEY_ALLOWED_ORIGINS",
                "https://WWW.example.com, http://localhost:3000/",
            )]),
        )
        .expect("loads");
        assert_eq!(
            c.allowed_origins,
            ["https://www.example.com", "http://localhost:3000"]
        );
        let err = Config::load_from(
            None,
            env(&[("LATCHKEY_ALLOWED_ORIGINS", "https://example.com/app")]),
        )
        .expect_err("a path")
        .to_string();
        assert!(
            err.contains("LATCHKEY_ALLOWED_ORIGINS") && err.contains("no path"),
            "{err}"
        );
    }
}
