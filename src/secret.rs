//! Secrets that never print: passwords from users and the server's signing key.

use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// A password as typed by a person. `Debug` shows `[redacted]`; the memory is
/// wiped on drop.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    /// Wraps a password.
    #[must_use]
    pub fn new(password: String) -> Self {
        Self(SecretString::from(password))
    }

    /// The password itself; call only where it is hashed or checked.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<String> for Password {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl<'de> serde::Deserialize<'de> for Password {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

/// The shortest server secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// The server secret: signs session cookies and derives CSRF tokens. At least
/// [`MIN_SECRET_LEN`] bytes.
#[derive(Clone)]
pub struct ServerSecret(SecretString);

impl ServerSecret {
    /// Accepts a secret of at least [`MIN_SECRET_LEN`] bytes (surrounding white space is dropped).
    ///
    /// # Errors
    /// When the secret is too short.
    pub fn new(secret: &str) -> Result<Self, SecretTooShort> {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET_LEN {
            return Err(SecretTooShort(secret.len()));
        }
        Ok(Self(SecretString::from(secret.to_owned())))
    }

    /// A fresh random secret: 48 random bytes as base64url (64 characters).
    #[must_use]
    pub fn generate() -> String {
        crate::random::random_base64::<48>()
    }

    /// Whether the secret would pass [`checked`]: the reason when not.
    pub(crate) fn weakness(&self) -> Option<String> {
        checked(self.0.expose_secret()).err()
    }

    /// A key for one purpose, derived so that no two uses share key material.
    pub(crate) fn derive(&self, purpose: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.0.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"latchkey key derivation\0");
        mac.update(purpose.as_bytes());
        let key = mac.finalize().into_bytes();
        HmacSha256::new_from_slice(&key).unwrap_or_else(|_| unreachable!("32-byte key"))
    }
}

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret([redacted])")
    }
}

/// A server secret shorter than [`MIN_SECRET_LEN`].
#[derive(Debug, thiserror::Error)]
#[error("the secret is {0} bytes long; it must be at least 32 bytes")]
pub struct SecretTooShort(pub usize);

/// A secret as configured, refused when too short or obviously guessable:
/// fewer than 10 different characters (`aaaa…`, `abcabc…`), which no random
/// secret of 32 bytes or more has. The reason names a random one to use.
pub(crate) fn checked(text: &str) -> Result<ServerSecret, String> {
    let secret = ServerSecret::new(text).map_err(|e| e.to_string())?;
    let distinct = text
        .trim()
        .chars()
        .collect::<std::collections::HashSet<_>>()
        .len();
    if distinct < 10 {
        return Err(format!(
            "the secret has only {distinct} different character{}: use a random one, such as {}",
            if distinct == 1 { "" } else { "s" },
            ServerSecret::generate()
        ));
    }
    Ok(secret)
}

/// Where the secret of an SQLite database is generated: beside it, named
/// after it (`latchkey.db.secret`).
pub(crate) fn path_beside(db: &Path) -> PathBuf {
    let mut name = db
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(".secret");
    db.with_file_name(name)
}

/// Why a secret file could not be used.
#[derive(Debug)]
pub(crate) enum FileError {
    /// It could not be read or written.
    Io(std::io::Error),
    /// It holds a secret [`checked`] refuses.
    Weak(String),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => e.fmt(f),
            Self::Weak(reason) => f.write_str(reason),
        }
    }
}

/// The secret in `path`; when there is no such file, a random one written
/// there first (mode 0600, and only if the file is still missing, so two
/// processes starting at once end up with the same one) and announced in
/// the log. A file that others than its owner may read or write is
/// refused: whoever knows the secret can forge device cookies and login
/// forms.
pub(crate) fn read_or_create(path: &Path) -> Result<ServerSecret, FileError> {
    let read = || read_file(path);
    if path.exists() {
        return read();
    }
    let secret = ServerSecret::generate();
    // Written whole under a temporary name, then linked into place, which
    // fails if the file appeared meanwhile: no process ever reads a file
    // still being written, and a crash leaves no empty secret behind.
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", crate::random::random_base64::<9>()));
    let temporary = PathBuf::from(temporary);
    write_private(&temporary, &secret).map_err(FileError::Io)?;
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return read(),
        Err(e) => return Err(FileError::Io(e)),
    }
    tracing::warn!(file = %path.display(),
        "no secret configured: generated a new one into this file (mode 0600); keep it, \
         and give every instance on this database the same one");
    ServerSecret::new(&secret).map_err(|e| FileError::Weak(e.to_string()))
}

/// The secret in `path`, which must exist and be private to its owner.
pub(crate) fn read_file(path: &Path) -> Result<ServerSecret, FileError> {
    checked(&read_private(path)?).map_err(FileError::Weak)
}

/// The text of a file that must be private to its owner: a secret, or a
/// list of previous secrets.
pub(crate) fn read_private(path: &Path) -> Result<String, FileError> {
    private_enough(path)?;
    std::fs::read_to_string(path).map_err(FileError::Io)
}

/// Refuses a secret file that its group or others may read or write.
fn private_enough(path: &Path) -> Result<(), FileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(FileError::Io)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(FileError::Weak(format!(
                "others than its owner may read or write it (mode {:o}): chmod 600 it",
                mode & 0o777
            )));
        }
    }
    Ok(())
}

/// Creates `path` (and its directory) with `contents`, readable only by
/// its owner; fails if it exists.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let p = Password::new("hunter2-hunter2".into());
        assert!(!format!("{p:?}").contains("hunter2"));
        let s = ServerSecret::new("0123456789abcdef0123456789abcdef-more").expect("long enough");
        assert!(!format!("{s:?}").contains("0123"));
    }

    #[test]
    fn processes_starting_at_once_share_one_generated_secret_and_none_reads_it_half_written() {
        let dir = tempfile::tempdir().expect("dir");
        for round in 0..20 {
            let path = dir.path().join(format!("db{round}.secret"));
            let secrets: Vec<String> = std::thread::scope(|s| {
                let all: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| read_or_create(&path).map(|k| k.0.expose_secret().to_owned()))
                    })
                    .collect();
                all.into_iter()
                    .map(|t| t.join().expect("thread").expect("a secret"))
                    .collect()
            });
            assert!(secrets.windows(2).all(|w| w[0] == w[1]), "round {round}");
        }
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("open.secret");
        std::fs::write(&path, ServerSecret::generate()).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let refused = read_file(&path).expect_err("refused").to_string();
        assert!(refused.contains("mode 644"), "{refused}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(read_file(&path).is_ok());
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(ServerSecret::new("short").is_err());
        assert!(ServerSecret::new(&"x".repeat(32)).is_ok());
    }
}
