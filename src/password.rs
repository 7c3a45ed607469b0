//! Password hashing (argon2id on a bounded blocking pool), verification of
//! older hash formats, and the rules a new password must meet.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, PasswordHash, PasswordVerifier as _, Version};

use crate::secret::Password;

/// argon2id cost parameters. The defaults are OWASP's: 19 MiB, 2 passes, 1 lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl HashParams {
    fn argon2(self) -> Result<Argon2<'static>, argon2::Error> {
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, None)?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Checks that argon2 accepts these parameters.
    ///
    /// # Errors
    /// With argon2's reason when it does not.
    pub fn validate(self) -> Result<(), String> {
        self.argon2().map(|_| ()).map_err(|e| e.to_string())
    }

    /// Whether these parameters are at least as costly as one of OWASP's
    /// argon2id choices (Password Storage Cheat Sheet): 47 MiB with one pass,
    /// 19 MiB with two, 12 MiB with three, 9 MiB with four, 7 MiB with five.
    #[must_use]
    pub fn meets_owasp_minimum(self) -> bool {
        let needed = match self.iterations {
            0 => return false,
            1 => 47_104,
            2 => 19_456,
            3 => 12_288,
            4 => 9_216,
            _ => 7_168,
        };
        self.memory_kib >= needed
    }
}

/// Why hashing could not be done.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many logins are already waiting for the hashing pool.
    #[error("the password hashing queue is full")]
    Busy,
    /// The hashing task failed.
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The password is right.
    pub matches: bool,
    /// The stored hash is of another kind or cost than the current one and
    /// should be replaced now that the password is known.
    pub needs_rehash: bool,
}

/// Hashes and verifies passwords on a few dedicated threads (one per core
/// by default), at a lower scheduling priority than the threads that serve
/// requests: a login flood then uses the spare CPU without starving
/// everyone else's page loads, and memory stays at one argon2 buffer per
/// thread however many logins wait.
pub struct PasswordHasher {
    params: HashParams,
    jobs: std::sync::mpsc::SyncSender<Job>,
    dummy_hash: String,
}

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// A hashing thread's state: its argon2 instance and the memory it hashes
/// in, allocated once. (Allocating 19 MiB per hash lets glibc keep freed
/// buffers per thread arena, and a login flood then grows the process by
/// hundreds of megabytes.)
pub(crate) struct Worker {
    argon2: Argon2<'static>,
    memory: Vec<argon2::Block>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

fn hashing_thread(mut worker: Worker, jobs: Arc<std::sync::Mutex<std::sync::mpsc::Receiver<Job>>>) {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let lowered = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch),
    );
    if let Err(e) = lowered {
        tracing::debug!(error = ?e, "cannot lower the hashing thread's priority");
    }
    loop {
        let job = {
            let rx = jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            rx.recv()
        };
        match job {
            Ok(job) => job(&mut worker),
            // The hasher is gone.
            Err(_) => return,
        }
    }
}

impl PasswordHasher {
    /// A hasher with these parameters, hashing on `concurrency` threads
    /// (normally the number of cores). Computes the dummy hash used for
    /// unknown usernames.
    ///
    /// # Errors
    /// When the parameters are invalid or the threads cannot start.
    pub async fn new(params: HashParams, concurrency: usize) -> Result<Arc<Self>, HashError> {
        let argon2 = params
            .argon2()
            .map_err(|e| HashError::Failed(e.to_string()))?;
        let concurrency = concurrency.max(1);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(256 * concurrency);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let blocks = argon2::Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| HashError::Failed(e.to_string()))?
        .block_count();
        for i in 0..concurrency {
            let (argon2, rx) = (argon2.clone(), rx.clone());
            std::thread::Builder::new()
                .name(format!("latchkey-hash-{i}"))
                .spawn(move || {
                    let memory = vec![argon2::Block::default(); blocks];
                    hashing_thread(Worker { argon2, memory }, rx);
                })
                .map_err(|e| HashError::Failed(e.to_string()))?;
        }
        let mut hasher = Self {
            params,
            jobs: tx,
            dummy_hash: String::new(),
        };
        let random = Password::new(crate::random::random_base64::<24>());
        hasher.dummy_hash = hasher.run(move |a| hash_blocking(a, &random)).await?;
        Ok(Arc::new(hasher))
    }

    /// The current parameters.
    #[must_use]
    pub fn params(&self) -> HashParams {
        self.params
    }

    async fn run<T, F>(&self, work: F) -> Result<T, HashError>
    where
        F: FnOnce(&mut Worker) -> Result<T, HashError> + Send + 'static,
        T: Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |worker| {
            // A client that gave up (its request was dropped) costs no hash.
            if !done.is_closed() {
                let _ = done.send(work(worker));
            }
        });
        self.jobs.try_send(job).map_err(|e| match e {
            std::sync::mpsc::TrySendError::Full(_) => HashError::Busy,
            std::sync::mpsc::TrySendError::Disconnected(_) => {
                HashError::Failed("the hashing threads have stopped".into())
            }
        })?;
        result
            .await
            .map_err(|_| HashError::Failed("a hashing thread panicked".into()))?
    }

    /// Hashes a password with the current parameters.
    ///
    /// # Errors
    /// When the pool is saturated or hashing fails.
    #[tracing::instrument(skip_all)]
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let password = password.clone();
        self.run(move |w| hash_blocking(w, &password)).await
    }

    /// Checks a password against a stored hash; with `None` (no such user) it
    /// checks against a dummy hash of the same cost, so that unknown names
    /// take as long as wrong passwords, and reports no match.
    ///
    /// # Errors
    /// When the pool is saturated or the task fails.
    #[tracing::instrument(skip_all)]
    pub async fn verify(
        &self,
        password: &Password,
        stored: Option<&str>,
    ) -> Result<Verified, HashError> {
        let known = stored.is_some();
        let stored = stored.unwrap_or(&self.dummy_hash).to_owned();
        let password = password.clone();
        let params = self.params;
        let verified = self
            .run(move |w| Ok(verify_blocking(w, params, &password, &stored)))
            .await?;
        Ok(Verified {
            matches: verified.matches && known,
            needs_rehash: verified.needs_rehash && known,
        })
    }
}

/// A password as it is hashed: Unicode NFC (RFC 8265's OpaqueString), so
/// that the same characters typed on another keyboard or system, composed
/// or decomposed, are the same password.
fn normalised(password: &str) -> std::borrow::Cow<'_, str> {
    use unicode_normalization::UnicodeNormalization as _;
    match unicode_normalization::is_nfc_quick(password.chars()) {
        unicode_normalization::IsNormalized::Yes => std::borrow::Cow::Borrowed(password),
        _ => std::borrow::Cow::Owned(password.nfc().collect()),
    }
}

fn hash_blocking(worker: &mut Worker, password: &Password) -> Result<String, HashError> {
    use argon2::password_hash::phc::{Output, ParamsString, Salt};
    let failed = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    let salt = crate::random::random_bytes::<16>();
    let mut out = [0u8; 32];
    worker
        .argon2
        .hash_password_into_with_memory(
            normalised(password.expose()).as_bytes(),
            &salt,
            &mut out,
            &mut worker.memory,
        )
        .map_err(|e| failed(&e))?;
    let params = worker.argon2.params();
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| failed(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| failed(&e))?),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

/// Checks an argon2 PHC hash in the worker's memory when it fits (it
/// always does for hashes made with the current parameters).
fn verify_argon2(worker: &mut Worker, pw: &[u8], parsed: &PasswordHash) -> bool {
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = parsed
        .version
        .map_or(Ok(Version::V0x13), Version::try_from)
        .unwrap_or(Version::V0x13);
    let Ok(params) = argon2::Params::try_from(parsed) else {
        return false;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.as_bytes().len()];
    let done = if blocks <= worker.memory.len() {
        argon2.hash_password_into_with_memory(pw, salt, &mut out, &mut worker.memory[..blocks])
    } else {
        argon2.hash_password_into(pw, salt, &mut out)
    };
    done.is_ok() && bool::from(subtle::ConstantTimeEq::ct_eq(&out[..], expected.as_bytes()))
}

fn verify_blocking(
    worker: &mut Worker,
    params: HashParams,
    password: &Password,
    stored: &str,
) -> Verified {
    let raw = password.expose();
    let nfc = normalised(raw);
    let verified = verify_bytes(worker, params, nfc.as_bytes(), stored);
    if verified.matches || nfc == raw {
        return verified;
    }
    // Hashes made before passwords were normalised hold the bytes as they
    // were typed: such a match is upgraded (rehashed in NFC) at once.
    let legacy = verify_bytes(worker, params, raw.as_bytes(), stored);
    Verified {
        matches: legacy.matches,
        needs_rehash: true,
    }
}

fn verify_bytes(worker: &mut Worker, params: HashParams, pw: &[u8], stored: &str) -> Verified {
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        return Verified {
            matches: bcrypt::verify(pw, stored).unwrap_or(false),
            needs_rehash: true,
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        tracing::warn!("a stored password hash is in no format latchkey reads");
        return Verified {
            matches: false,
            needs_rehash: false,
        };
    };
    let algorithm = parsed.algorithm.as_str();
    let matches = match algorithm {
        "argon2id" | "argon2i" | "argon2d" => verify_argon2(worker, pw, &parsed),
        "scrypt" => scrypt::Scrypt::default()
            .verify_password(pw, &parsed)
            .is_ok(),
        a if a.starts_with("pbkdf2") => pbkdf2::Pbkdf2::default()
            .verify_password(pw, &parsed)
            .is_ok(),
        _ => false,
    };
    let current = algorithm == "argon2id"
        && parsed.version == Some(0x13)
        && argon2::Params::try_from(&parsed).is_ok_and(|p| {
            p.m_cost() == params.memory_kib
                && p.t_cost() == params.iterations
                && p.p_cost() == params.parallelism
        });
    Verified {
        matches,
        needs_rehash: !current,
    }
}

/// Fewest characters in a new password (NIST SP 800-63B).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Most bytes in any password; longer input is refused before hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a new password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejected {
    /// Fewer than [`MIN_PASSWORD_CHARS`] characters.
    #[error("the password must have at least 8 characters")]
    TooShort,
    /// More than [`MAX_PASSWORD_BYTES`] bytes.
    #[error("the password must be at most 1024 bytes")]
    TooLong,
    /// A common, guessable or name-derived password.
    #[error("the password is too easy to guess; use a longer or less common one")]
    TooGuessable,
}

/// Checks a new password against the rules: length, then guessability by
/// zxcvbn (common passwords, keyboard patterns, dates, the username itself).
/// CPU-heavy for long input: call off the async threads (see
/// [`check_new_password_async`]).
///
/// # Errors
/// With the first rule the password breaks.
pub fn check_new_password(password: &Password, username: &str) -> Result<(), PasswordRejected> {
    if password.expose().len() > MAX_PASSWORD_BYTES {
        return Err(PasswordRejected::TooLong);
    }
    let pw = normalised(password.expose());
    if pw.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordRejected::TooShort);
    }
    // zxcvbn's cost grows with length; 100 characters of anything it cannot
    // guess are plenty, so only a prefix is scored.
    let prefix: String = pw.chars().take(100).collect();
    let score = zxcvbn::zxcvbn(&prefix, &[username, "latchkey"]).score();
    if (score as u8) < 3 {
        return Err(PasswordRejected::TooGuessable);
    }
    Ok(())
}

/// [`check_new_password`] on the blocking pool.
///
/// # Errors
/// As [`check_new_password`].
pub async fn check_new_password_async(
    password: &Password,
    username: &str,
) -> Result<(), PasswordRejected> {
    let password = password.clone();
    let username = username.to_owned();
    tokio::task::spawn_blocking(move || check_new_password(&password, &username))
        .await
        .unwrap_or(Err(PasswordRejected::TooGuessable))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::new(s.to_owned())
    }

    const CHEAP: HashParams = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn owasp_minimums_are_known() {
        assert!(HashParams::default().meets_owasp_minimum());
        let p = |memory_kib, iterations| HashParams {
            memory_kib,
            iterations,
            parallelism: 1,
        };
        assert!(p(12_288, 3).meets_owasp_minimum());
        assert!(!p(12_288, 2).meets_owasp_minimum());
        assert!(!p(1_024, 1).meets_owasp_minimum());
        assert!(p(7_168, 9).meets_owasp_minimum());
    }

    #[tokio::test]
    async fn a_hash_verifies_only_its_own_password() {
        let h = PasswordHasher::new(CHEAP, 2).await.expect("hasher");
        let hash = h.hash(&pw("plover-trombone-91")).await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        let ok = h
            .verify(&pw("plover-trombone-91"), Some(&hash))
            .await
            .expect("verify");
        assert!(ok.matches && !ok.needs_rehash);
        let bad = h
            .verify(&pw("plover-trombone-92"), Some(&hash))
            .await
            .expect("verify");
        assert!(!bad.matches);
    }

    #[tokio::test]
    async fn our_hashes_are_standard_phc_strings() {
        let h = PasswordHasher::new(CHEAP, 1).await.expect("hasher");
        let hash = h.hash(&pw("plover-trombone-91")).await.expect("hash");
        let parsed = PasswordHash::new(&hash).expect("parses");
        let reference = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            argon2::Params::new(64, 1, 1, None).expect("params"),
        );
        assert!(
            reference
                .verify_password(b"plover-trombone-91", &parsed)
                .is_ok()
        );
        assert!(
            reference
                .verify_password(b"plover-trombone-92", &parsed)
                .is_err()
        );
    }

    #[tokio::test]
    async fn composed_and_decomposed_forms_are_the_same_password() {
        let h = PasswordHasher::new(CHEAP, 1).await.expect("hasher");
        let (composed, decomposed) = (
            "gr\u{fc}\u{df}e-trombone-91",
            "gru\u{308}\u{df}e-trombone-91",
        );
        let hash = h.hash(&pw(composed)).await.expect("hash");
        let v = h
            .verify(&pw(decomposed), Some(&hash))
            .await
            .expect("verify");
        assert!(v.matches && !v.needs_rehash);
        // A hash of the bytes as typed, made before passwords were
        // normalised, still matches them, and is due for an upgrade.
        let params = argon2::Params::new(64, 1, 1, None).expect("params");
        let legacy = argon2::PasswordHasher::hash_password_with_salt(
            &Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            decomposed.as_bytes(),
            b"saltsaltsaltsalt",
        )
        .expect("legacy hash")
        .to_string();
        let v = h
            .verify(&pw(decomposed), Some(&legacy))
            .await
            .expect("verify");
        assert!(v.matches && v.needs_rehash);
        let v = h
            .verify(&pw("gru\u{308}\u{df}e-trombone-92"), Some(&legacy))
            .await
            .expect("verify");
        assert!(!v.matches);
    }

    #[tokio::test]
    async fn unknown_users_never_match() {
        let h = PasswordHasher::new(CHEAP, 1).await.expect("hasher");
        let v = h
            .verify(&pw("anything at all"), None)
            .await
            .expect("verify");
        assert!(!v.matches && !v.needs_rehash);
    }

    #[tokio::test]
    async fn bcrypt_and_other_costs_verify_and_ask_for_a_rehash() {
        let h = PasswordHasher::new(CHEAP, 1).await.expect("hasher");
        let bc = bcrypt::hash("old-school-secret", 4).expect("bcrypt");
        let v = h
            .verify(&pw("old-school-secret"), Some(&bc))
            .await
            .expect("verify");
        assert!(v.matches && v.needs_rehash);
        let other = PasswordHasher::new(
            HashParams {
                memory_kib: 128,
                ..CHEAP
            },
            1,
        )
        .await
        .expect("hasher");
        let hash = other.hash(&pw("plover-trombone-91")).await.expect("hash");
        let v = h
            .verify(&pw("plover-trombone-91"), Some(&hash))
            .await
            .expect("verify");
        assert!(v.matches && v.needs_rehash);
    }

    #[test]
    fn weak_new_passwords_are_refused() {
        assert_eq!(
            check_new_password(&pw("short"), "ann"),
            Err(PasswordRejected::TooShort)
        );
        assert_eq!(
            check_new_password(&pw("password1"), "ann"),
            Err(PasswordRejected::TooGuessable)
        );
        assert_eq!(
            check_new_password(&pw("annabelle1"), "annabelle"),
            Err(PasswordRejected::TooGuessable)
        );
        assert_eq!(
            check_new_password(&pw(&"é".repeat(600)), "ann"),
            Err(PasswordRejected::TooLong)
        );
        assert_eq!(check_new_password(&pw("plover-trombone-91"), "ann"), Ok(()));
        assert_eq!(
            check_new_password(&pw("grüne Ölkännchen wandern"), "ann"),
            Ok(())
        );
    }
}
