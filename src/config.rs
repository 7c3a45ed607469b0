//! Configuration: defaults, then an optional TOML file, then `LATCHKEY_*`
//! environment variables. Every bad setting stops start-up with a message
//! that names it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format as _, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

use crate::password::HashParams;
use crate::secret::ServerSecret;
use crate::session::SameSite;

/// Prefix of every environment variable latchkey reads.
pub const ENV_PREFIX: &str = "LATCHKEY_";

/// The settings as read, before validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    bind: String,
    public_url: String,
    database_url: String,
    session_store_url: Option<String>,
    session_store_prefix: String,
    #[serde(skip_serializing)]
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    #[serde(skip_serializing)]
    previous_secrets: Option<String>,
    previous_secrets_file: Option<PathBuf>,
    idle_timeout: String,
    absolute_timeout: String,
    login_max_failures: u32,
    login_lockout: String,
    login_window: String,
    login_ip_max_failures: u32,
    login_rate: u32,
    refusal_delay: String,
    change_feed_timeout: String,
    #[serde(deserialize_with = "string_or_list")]
    trusted_proxies: Vec<String>,
    same_site: String,
    argon2_memory_kib: u32,
    argon2_iterations: u32,
    argon2_parallelism: u32,
    hash_concurrency: usize,
    log_format: String,
    header_read_timeout: String,
    request_timeout: String,
    keep_alive_timeout: String,
    max_connections: usize,
    max_connections_per_address: usize,
}

impl Default for Raw {
    fn default() -> Self {
        let hash = HashParams::default();
        Self {
            bind: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            database_url: "sqlite://latchkey.db".into(),
            session_store_url: None,
            session_store_prefix: "latchkey".into(),
            secret: None,
            secret_file: None,
            previous_secrets: None,
            previous_secrets_file: None,
            idle_timeout: "30m".into(),
            absolute_timeout: "12h".into(),
            login_max_failures: 5,
            login_lockout: "15m".into(),
            login_window: "15m".into(),
            login_ip_max_failures: 50,
            login_rate: 120,
            refusal_delay: "1s".into(),
            change_feed_timeout: "1s".into(),
            trusted_proxies: Vec::new(),
            same_site: "lax".into(),
            argon2_memory_kib: hash.memory_kib,
            argon2_iterations: hash.iterations,
            argon2_parallelism: hash.parallelism,
            hash_concurrency: 0,
            log_format: "text".into(),
            header_read_timeout: "10s".into(),
            request_timeout: "30s".into(),
            keep_alive_timeout: "60s".into(),
            max_connections: 10_000,
            max_connections_per_address: 256,
        }
    }
}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Either::Many(v) => v,
    })
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
    /// argon2id parameters for new hashes.
    pub hash_params: HashParams,
    /// How many password hashes run at once (default: the number of cores).
    pub hash_concurrency: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// How the server treats connections: timeouts and caps.
    pub connections: ConnectionLimits,
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

fn duration(setting: &str, value: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(value.trim()).map_err(|e| {
        invalid(
            setting,
            format!("{value:?} is not a duration like 30m, 12h or 2s ({e})"),
        )
    })?;
    if d.is_zero() {
        return Err(invalid(setting, "must be longer than zero"));
    }
    Ok(d)
}

fn at_least_one<T: Copy + PartialEq + From<u8>>(setting: &str, value: T) -> Result<T, ConfigError> {
    if value == T::from(0) {
        return Err(invalid(setting, "must be at least 1"));
    }
    Ok(value)
}

/// Environment variables latchkey knows; others with the prefix get a warning.
const KNOWN_ENV: &[&str] = &[
    "BIND",
    "PUBLIC_URL",
    "DATABASE_URL",
    "SESSION_STORE_URL",
    "SESSION_STORE_PREFIX",
    "SECRET",
    "SECRET_FILE",
    "PREVIOUS_SECRETS",
    "PREVIOUS_SECRETS_FILE",
    "IDLE_TIMEOUT",
    "ABSOLUTE_TIMEOUT",
    "LOGIN_MAX_FAILURES",
    "LOGIN_LOCKOUT",
    "LOGIN_WINDOW",
    "LOGIN_IP_MAX_FAILURES",
    "LOGIN_RATE",
    "CHANGE_FEED_TIMEOUT",
    "REFUSAL_DELAY",
    "TRUSTED_PROXIES",
    "SAME_SITE",
    "ARGON2_MEMORY_KIB",
    "ARGON2_ITERATIONS",
    "ARGON2_PARALLELISM",
    "HASH_CONCURRENCY",
    "LOG_FORMAT",
    "HEADER_READ_TIMEOUT",
    "REQUEST_TIMEOUT",
    "KEEP_ALIVE_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_ADDRESS",
    "CONFIG",
];

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
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        let mut figment = Figment::from(Serialized::defaults(Raw::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid(
                    "config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let mut env_values = Vec::new();
        for (key, value) in &env {
            let name = &key[ENV_PREFIX.len()..];
            if !KNOWN_ENV.contains(&name) {
                tracing::warn!(variable = %key, "unknown latchkey environment variable ignored");
                continue;
            }
            if matches!(name, "CONFIG" | "SECRET") {
                continue;
            }
            env_values.push((name.to_lowercase(), value.clone()));
        }
        // Values are given to figment as strings or numbers, never guessed as
        // TOML, so a secret or URL is taken exactly as written.
        for (name, value) in env_values {
            let numeric = matches!(
                name.as_str(),
                "login_max_failures"
                    | "login_ip_max_failures"
                    | "login_rate"
                    | "argon2_memory_kib"
                    | "argon2_iterations"
                    | "argon2_parallelism"
                    | "hash_concurrency"
                    | "max_connections"
                    | "max_connections_per_address"
            );
            figment = if numeric {
                let n: u64 = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(&name, format!("{value:?} is not a whole number")))?;
                figment.merge(Serialized::default(&name, n))
            } else {
                figment.merge(Serialized::default(&name, value))
            };
        }
        let mut raw: Raw = figment
            .extract()
            .map_err(|e| ConfigError::Read(Box::new(e)))?;
        if let Some((_, secret)) = env.iter().find(|(k, _)| k == "LATCHKEY_SECRET") {
            raw.secret = Some(secret.clone());
        }
        Self::validate(raw)
    }

    fn validate(raw: Raw) -> Result<Self, ConfigError> {
        let bind: SocketAddr = raw.bind.parse().map_err(|_| {
            invalid(
                "bind",
                format!("{:?} is not an address like 127.0.0.1:8080", raw.bind),
            )
        })?;
        let public_url = url::Url::parse(&raw.public_url)
            .map_err(|e| invalid("public_url", format!("{:?}: {e}", raw.public_url)))?;
        match public_url.scheme() {
            "https" => {}
            "http" => {
                if !crate::builder::is_this_machine(&public_url) {
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
        let idle_timeout = duration("idle_timeout", &raw.idle_timeout)?;
        let absolute_timeout = duration("absolute_timeout", &raw.absolute_timeout)?;
        let login_lockout = duration("login_lockout", &raw.login_lockout)?;
        let login_window = duration("login_window", &raw.login_window)?;
        let change_feed_timeout = duration("change_feed_timeout", &raw.change_feed_timeout)?;
        // Zero is allowed here (no delay), unlike the timeouts.
        let refusal_delay = if raw.refusal_delay.trim() == "0" {
            Duration::ZERO
        } else {
            humantime::parse_duration(raw.refusal_delay.trim()).map_err(|e| {
                invalid(
                    "refusal_delay",
                    format!(
                        "{:?} is not a duration like 1s or 500ms ({e})",
                        raw.refusal_delay
                    ),
                )
            })?
        };
        if change_feed_timeout < Duration::from_millis(40) {
            return Err(invalid(
                "change_feed_timeout",
                "must be at least 40ms (heartbeats go out four times per timeout)",
            ));
        }
        at_least_one("login_max_failures", raw.login_max_failures)?;
        at_least_one("login_ip_max_failures", raw.login_ip_max_failures)?;
        at_least_one("login_rate", raw.login_rate)?;
        let trusted_proxies = raw
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        invalid(
                            "trusted_proxies",
                            format!("{p:?} is not an IP address or CIDR range"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let same_site = match raw.same_site.to_ascii_lowercase().as_str() {
            "lax" => SameSite::Lax,
            "strict" => SameSite::Strict,
            other => {
                return Err(invalid(
                    "same_site",
                    format!("{other:?} is not lax or strict"),
                ));
            }
        };
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
        let log_format = match raw.log_format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log_format",
                    format!("{other:?} is not text or json"),
                ));
            }
        };
        let connections = ConnectionLimits {
            header_read_timeout: duration("header_read_timeout", &raw.header_read_timeout)?,
            request_timeout: duration("request_timeout", &raw.request_timeout)?,
            keep_alive_timeout: duration("keep_alive_timeout", &raw.keep_alive_timeout)?,
            max_connections: at_least_one("max_connections", raw.max_connections)?,
            max_connections_per_address: at_least_one(
                "max_connections_per_address",
                raw.max_connections_per_address,
            )?,
        };
        Ok(Self {
            bind,
            public_url,
            database_url,
            session_store_url,
            session_store_prefix: prefix.to_owned(),
            secret,
            previous_secrets,
            previous_secrets_file: raw.previous_secrets_file.clone(),
            idle_timeout,
            absolute_timeout,
            login_max_failures: raw.login_max_failures,
            login_lockout,
            login_window,
            login_ip_max_failures: raw.login_ip_max_failures,
            change_feed_timeout,
            refusal_delay,
            login_rate: raw.login_rate,
            trusted_proxies,
            same_site,
            hash_params,
            hash_concurrency,
            log_format,
            connections,
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
        self.public_url.scheme() == "http" && crate::builder::is_this_machine(&self.public_url)
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
            SecretSource::File(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
                        path: path.clone(),
                        source,
                    })?;
                checked_secret(&text, "secret_file")
            }
            SecretSource::Generated(path) => {
                crate::secret::read_or_create(path).map_err(|e| match e {
                    crate::secret::FileError::Io(source) => ConfigError::SecretFile {
                        path: path.clone(),
                        source,
                    },
                    crate::secret::FileError::Weak(reason) => invalid("secret_file", reason),
                })
            }
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
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
                path: path.clone(),
                source,
            })?;
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
        for name in KNOWN_ENV.iter().filter(|n| **n != "CONFIG") {
            assert!(
                readme.contains(&format!("`LATCHKEY_{name}`")),
                "README lacks LATCHKEY_{name}"
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
}
