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
    jobs: Arc<Lanes>,
    /// One dummy hash per scheme in use, the current scheme first. Every
    /// verification checks the password once per entry (against the
    /// user's own hash for the entry of its scheme), so that how long it
    /// takes depends on the schemes in use and never on the user.
    dummies: std::sync::RwLock<Arc<[Dummy]>>,
}

/// A hash of a random password in one scheme: what a verification checks
/// in that scheme when the user's hash is of another (or there is no user).
#[derive(Debug, Clone)]
struct Dummy {
    scheme: HashScheme,
    hash: String,
}

/// What makes a stored hash cost what it costs to verify: the algorithm and
/// every parameter that sets the work (`$argon2id$v=19$m=19456,t=2,p=1`
/// with a 32-byte output, `$2b$12`). Salts and outputs are not part of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HashScheme(String);

impl HashScheme {
    /// The scheme of a stored hash, or `None` for a format latchkey cannot
    /// verify (such a hash matches no password, at no cost of its own).
    ///
    /// ```
    /// use latchkey::HashScheme;
    /// let bcrypt = "$2y$10$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui";
    /// assert_eq!(HashScheme::of(bcrypt).unwrap().as_str(), "$2b$10");
    /// assert!(HashScheme::of("plain text").is_none());
    /// ```
    #[must_use]
    pub fn of(stored: &str) -> Option<Self> {
        if let Some(cost) = bcrypt_cost(stored) {
            // $2a$, $2b$ and $2y$ differ in how old libraries treated odd
            // bytes, not in cost.
            return Some(Self(format!("$2b${cost:02}")));
        }
        let parsed = PasswordHash::new(stored).ok()?;
        let algorithm = parsed.algorithm.as_str();
        // Parameters the algorithm refuses make a hash that matches nothing
        // and costs nothing: no scheme, and no dummy that could not be made.
        let known = match algorithm {
            "argon2id" | "argon2i" | "argon2d" => argon2::Params::try_from(&parsed).is_ok(),
            "scrypt" => scrypt::Params::try_from(&parsed).is_ok(),
            a if a.starts_with("pbkdf2") => pbkdf2::Params::try_from(&parsed).is_ok(),
            _ => false,
        };
        let output = parsed.hash.as_ref()?.len();
        let version = parsed
            .version
            .map(|v| format!("$v={v}"))
            .unwrap_or_default();
        known.then(|| Self(format!("${algorithm}{version}${}/{output}", parsed.params)))
    }

    /// The scheme as text: the PHC prefix (with the output length after a
    /// `/`) or `$2b$` and the bcrypt cost.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for HashScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The cost of a bcrypt hash (`$2b$12$…`), if it is one.
fn bcrypt_cost(stored: &str) -> Option<u32> {
    let rest = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .find_map(|prefix| stored.strip_prefix(prefix))?;
    let (cost, _) = rest.split_once('$')?;
    cost.parse().ok()
}

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// A hashing thread's state: its argon2 instance and the memory it hashes
/// in, allocated once. (Allocating 19 MiB per hash lets glibc keep freed
/// buffers per thread arena, and a login flood then grows the process by
/// hundreds of megabytes.) The memory grows, once, to the largest argon2
/// scheme in use, since every login verifies a hash of each.
pub(crate) struct Worker {
    argon2: Argon2<'static>,
    memory: Vec<argon2::Block>,
}

impl Worker {
    /// The first `blocks` blocks of this thread's buffer, grown to fit.
    fn memory(&mut self, blocks: usize) -> &mut [argon2::Block] {
        if self.memory.len() < blocks {
            self.memory.resize(blocks, argon2::Block::default());
        }
        &mut self.memory[..blocks]
    }
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// The hashing threads' work: a bounded queue for everybody and a smaller
/// one that is served first, for sign-ins from a known device (see
/// `crate::device`). A flood of guesses fills the first; the owner on her
/// own browser waits behind at most the hashes already being computed and
/// one more. While both have work they take turns: served strictly first,
/// steady sign-ins from known devices kept every new device waiting (a
/// soak of 16 users timed out new-device sign-ins after 30 s).
struct Lanes {
    queues: std::sync::Mutex<LaneQueues>,
    ready: std::sync::Condvar,
    capacity: usize,
}

#[derive(Default)]
struct LaneQueues {
    first: std::collections::VecDeque<Job>,
    rest: std::collections::VecDeque<Job>,
    /// Whether the last job taken while both lanes had work was the first
    /// lane's.
    took_first: bool,
    closed: bool,
}

impl Lanes {
    fn lock(&self) -> std::sync::MutexGuard<'_, LaneQueues> {
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a job; `Busy` when its lane is full.
    fn push(&self, job: Job, first: bool) -> Result<(), HashError> {
        let mut queues = self.lock();
        let lane = if first {
            &mut queues.first
        } else {
            &mut queues.rest
        };
        // The priority lane is smaller: a device's own lock limits how many
        // attempts it can send, so it never needs much room.
        let capacity = if first {
            self.capacity / 4
        } else {
            self.capacity
        };
        if lane.len() >= capacity.max(1) {
            return Err(HashError::Busy);
        }
        lane.push_back(job);
        drop(queues);
        self.ready.notify_one();
        Ok(())
    }

    /// The next job, the priority lane first, but in turns with the other
    /// while both have work; `None` once closed.
    fn pop(&self) -> Option<Job> {
        let mut queues = self.lock();
        loop {
            let both = !queues.first.is_empty() && !queues.rest.is_empty();
            let job = if both {
                queues.took_first = !queues.took_first;
                if queues.took_first {
                    queues.first.pop_front()
                } else {
                    queues.rest.pop_front()
                }
            } else {
                queues.first.pop_front().or_else(|| queues.rest.pop_front())
            };
            if let Some(job) = job {
                return Some(job);
            }
            if queues.closed {
                return None;
            }
            queues = self
                .ready
                .wait(queues)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

impl Drop for PasswordHasher {
    fn drop(&mut self) {
        self.jobs.lock().closed = true;
        self.jobs.ready.notify_all();
    }
}

fn hashing_thread(mut worker: Worker, jobs: Arc<Lanes>) {
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
    // Until the hasher is gone.
    while let Some(job) = jobs.pop() {
        job(&mut worker);
    }
}

impl PasswordHasher {
    /// A hasher with these parameters, hashing on `concurrency` threads
    /// (normally the number of cores). Computes the dummy hash of the
    /// current scheme; the schemes of stored hashes are added with
    /// [`PasswordHasher::learn_scheme`].
    ///
    /// # Errors
    /// When the parameters are invalid or the threads cannot start.
    pub async fn new(params: HashParams, concurrency: usize) -> Result<Arc<Self>, HashError> {
        let argon2 = params
            .argon2()
            .map_err(|e| HashError::Failed(e.to_string()))?;
        let concurrency = concurrency.max(1);
        let lanes = Arc::new(Lanes {
            queues: std::sync::Mutex::new(LaneQueues::default()),
            ready: std::sync::Condvar::new(),
            capacity: 256 * concurrency,
        });
        let blocks = argon2::Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| HashError::Failed(e.to_string()))?
        .block_count();
        for i in 0..concurrency {
            let (argon2, rx) = (argon2.clone(), lanes.clone());
            std::thread::Builder::new()
                .name(format!("latchkey-hash-{i}"))
                .spawn(move || {
                    let memory = vec![argon2::Block::default(); blocks];
                    hashing_thread(Worker { argon2, memory }, rx);
                })
                .map_err(|e| HashError::Failed(e.to_string()))?;
        }
        let hasher = Self {
            params,
            jobs: lanes,
            dummies: std::sync::RwLock::new(Arc::from([])),
        };
        let random = Password::new(crate::random::random_base64::<24>());
        let hash = hasher.run(move |w| hash_blocking(w, &random)).await?;
        let scheme = HashScheme::of(&hash)
            .ok_or_else(|| HashError::Failed("our own hash has no scheme".into()))?;
        *hasher.dummies_mut() = Arc::from([Dummy { scheme, hash }]);
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
        self.run_in(work, false).await
    }

    async fn run_in<T, F>(&self, work: F, first: bool) -> Result<T, HashError>
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
        self.jobs.push(job, first)?;
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

    /// Checks a password against a stored hash; with `None` (no such user)
    /// it reports no match. Either way the password is checked once in
    /// every scheme in use (against the user's hash in its own scheme, a
    /// dummy hash in the others), so that an unknown name takes exactly as
    /// long as a known one, whatever algorithm and cost the known user's
    /// hash has. With every hash at the current parameters that is one
    /// verification, as it would be without this.
    ///
    /// A hash of a scheme not yet in use adds that scheme first.
    ///
    /// # Errors
    /// When the pool is saturated or the task fails.
    #[tracing::instrument(skip_all)]
    pub async fn verify(
        &self,
        password: &Password,
        stored: Option<&str>,
    ) -> Result<Verified, HashError> {
        self.verify_in(password, stored, false).await
    }

    /// [`PasswordHasher::verify`] ahead of every other waiting job: for a
    /// sign-in from a known device, so that a flood of guesses elsewhere
    /// does not make its owner wait.
    ///
    /// # Errors
    /// As [`PasswordHasher::verify`].
    #[tracing::instrument(skip_all)]
    pub async fn verify_first(
        &self,
        password: &Password,
        stored: Option<&str>,
    ) -> Result<Verified, HashError> {
        self.verify_in(password, stored, true).await
    }

    async fn verify_in(
        &self,
        password: &Password,
        stored: Option<&str>,
        first: bool,
    ) -> Result<Verified, HashError> {
        // Parsed once here: the job below then does for a known name only
        // what it does for an unknown one.
        let scheme = stored.and_then(HashScheme::of);
        let mut dummies = self.dummies();
        if let (Some(scheme), Some(stored)) = (&scheme, stored)
            && !dummies.iter().any(|d| d.scheme == *scheme)
        {
            match self.add_scheme(scheme.clone(), stored).await {
                Ok(_) => dummies = self.dummies(),
                // Still checked below, just not hidden among the others.
                Err(e) => tracing::warn!(error = %e, "cannot add a password hash scheme"),
            }
        }
        let stored = stored.map(str::to_owned);
        let password = password.clone();
        let params = self.params;
        self.run_in(
            move |w| {
                Ok(verify_everywhere(
                    w,
                    params,
                    &password,
                    stored.as_deref().map(|s| (s, scheme.as_ref())),
                    &dummies,
                ))
            },
            first,
        )
        .await
    }

    /// Adds the scheme of `stored` to those every verification covers,
    /// with a dummy hash made at its parameters; true if it was new.
    /// Unreadable hashes add nothing. Call it at start-up for one hash of
    /// each scheme in the user store, so that even the first login of a
    /// user with an old hash takes no longer than any other.
    ///
    /// # Errors
    /// When the pool is saturated or the task fails.
    pub async fn learn_scheme(&self, stored: &str) -> Result<bool, HashError> {
        match HashScheme::of(stored) {
            Some(scheme) => self.add_scheme(scheme, stored).await,
            None => Ok(false),
        }
    }

    async fn add_scheme(&self, scheme: HashScheme, stored: &str) -> Result<bool, HashError> {
        if self.dummies().iter().any(|d| d.scheme == scheme) {
            return Ok(false);
        }
        let like = stored.to_owned();
        let hash = self.run(move |_| dummy_like(&like)).await?;
        let mut dummies = self.dummies_mut();
        if dummies.iter().any(|d| d.scheme == scheme) {
            return Ok(false);
        }
        tracing::info!(scheme = %scheme, "password hash scheme in use; every login now also verifies a hash of it");
        let mut grown = dummies.to_vec();
        grown.push(Dummy { scheme, hash });
        *dummies = Arc::from(grown);
        Ok(true)
    }

    /// The schemes every verification covers, the current one first.
    #[must_use]
    pub fn schemes(&self) -> Vec<HashScheme> {
        self.dummies().iter().map(|d| d.scheme.clone()).collect()
    }

    fn dummies(&self) -> Arc<[Dummy]> {
        self.dummies
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn dummies_mut(&self) -> std::sync::RwLockWriteGuard<'_, Arc<[Dummy]>> {
        self.dummies
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A hash of a random password with the algorithm and parameters of
/// `like`: a dummy that costs what `like` costs to verify.
fn dummy_like(like: &str) -> Result<String, HashError> {
    use argon2::password_hash::CustomizedPasswordHasher;
    fn customized<H>(hasher: &H, parsed: &PasswordHash) -> Result<String, HashError>
    where
        H: CustomizedPasswordHasher<PasswordHash>,
        H::Params: for<'a> TryFrom<&'a PasswordHash, Error = argon2::password_hash::Error>,
    {
        let failed = |e: argon2::password_hash::Error| HashError::Failed(e.to_string());
        let params = H::Params::try_from(parsed).map_err(failed)?;
        let salt_len = parsed.salt.as_ref().map_or(16, |s| s.as_ref().len());
        let salt = &crate::random::random_bytes::<64>()[..salt_len.clamp(8, 64)];
        hasher
            .hash_password_customized(
                crate::random::random_base64::<24>().as_bytes(),
                salt,
                Some(parsed.algorithm.as_str()),
                parsed.version,
                params,
            )
            .map(|h| h.to_string())
            .map_err(failed)
    }
    if let Some(cost) = bcrypt_cost(like) {
        return bcrypt::hash(crate::random::random_base64::<24>(), cost)
            .map_err(|e| HashError::Failed(e.to_string()));
    }
    let parsed = PasswordHash::new(like).map_err(|e| HashError::Failed(e.to_string()))?;
    match parsed.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" => customized(&Argon2::default(), &parsed),
        "scrypt" => customized(&scrypt::Scrypt::default(), &parsed),
        a if a.starts_with("pbkdf2") => customized(&pbkdf2::Pbkdf2::default(), &parsed),
        a => Err(HashError::Failed(format!("no dummy for {a} hashes"))),
    }
}

/// The body of [`PasswordHasher::verify`]: one check per scheme in use.
/// `stored` is the user's hash and its scheme (`None` if unreadable).
fn verify_everywhere(
    worker: &mut Worker,
    params: HashParams,
    password: &Password,
    stored: Option<(&str, Option<&HashScheme>)>,
    dummies: &[Dummy],
) -> Verified {
    let mut verified = None;
    for dummy in dummies {
        match stored {
            Some((stored, scheme)) if scheme == Some(&dummy.scheme) => {
                verified = Some(verify_blocking(worker, params, password, stored));
            }
            // Only the time this takes matters: the same as the user's own.
            _ => _ = verify_blocking(worker, params, password, &dummy.hash),
        }
    }
    match (verified, stored) {
        (Some(verified), _) => verified,
        // Unreadable, or its scheme could not be added: checked anyway.
        (None, Some((stored, _))) => verify_blocking(worker, params, password, stored),
        (None, None) => Verified {
            matches: false,
            needs_rehash: false,
        },
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

/// Checks an argon2 PHC hash in the worker's memory.
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
    let done = argon2.hash_password_into_with_memory(pw, salt, &mut out, worker.memory(blocks));
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
    if bcrypt_cost(stored).is_some() {
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
    /// Holds a control character (a tab, a line break, an escape…), which
    /// RFC 8265's OpaqueString does not allow and which is mostly a slip of
    /// copy and paste that the owner could not type again.
    #[error("the password may not contain control characters such as tabs or line breaks")]
    ControlCharacter,
}

/// Checks a new password against the rules: length, no control characters
/// (RFC 8265's OpaqueString), then guessability by zxcvbn (common
/// passwords, keyboard patterns, dates, the username itself). Existing
/// passwords are never checked against these: verification only
/// normalises.
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
    if pw.chars().any(char::is_control) {
        return Err(PasswordRejected::ControlCharacter);
    }
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

    fn lanes(capacity: usize) -> Lanes {
        Lanes {
            queues: std::sync::Mutex::new(LaneQueues::default()),
            ready: std::sync::Condvar::new(),
            capacity,
        }
    }

    /// Runs the next `n` jobs on one worker; the names they sent, in order.
    fn run(
        lanes: &Lanes,
        n: usize,
        sent: &std::sync::mpsc::Receiver<&'static str>,
    ) -> Vec<&'static str> {
        let mut worker = Worker {
            argon2: HashParams::default().argon2().expect("params"),
            memory: Vec::new(),
        };
        for _ in 0..n {
            lanes.pop().expect("a job")(&mut worker);
        }
        sent.try_iter().collect()
    }

    #[test]
    fn a_known_device_is_served_before_sign_ins_already_waiting() {
        let lanes = lanes(8);
        let (tx, rx) = std::sync::mpsc::channel();
        for name in ["guess 1", "guess 2", "guess 3"] {
            let tx = tx.clone();
            lanes
                .push(Box::new(move |_| tx.send(name).expect("open")), false)
                .expect("room");
        }
        let first = tx.clone();
        lanes
            .push(Box::new(move |_| first.send("owner").expect("open")), true)
            .expect("room");
        assert_eq!(
            run(&lanes, 4, &rx),
            ["owner", "guess 1", "guess 2", "guess 3"]
        );
    }

    #[test]
    fn new_devices_take_turns_with_known_ones_rather_than_wait_for_them_all() {
        let lanes = lanes(16);
        let (tx, rx) = std::sync::mpsc::channel();
        let job = |name: &'static str| {
            let tx = tx.clone();
            Box::new(move |_: &mut Worker| tx.send(name).expect("open")) as Job
        };
        lanes.push(job("new 1"), false).expect("room");
        lanes.push(job("new 2"), false).expect("room");
        for name in ["known 1", "known 2", "known 3"] {
            lanes.push(job(name), true).expect("room");
        }
        assert_eq!(
            run(&lanes, 5, &rx),
            ["known 1", "new 1", "known 2", "new 2", "known 3"]
        );
    }

    #[test]
    fn each_lane_is_bounded_and_a_full_one_says_busy() {
        let lanes = lanes(8);
        for _ in 0..8 {
            lanes.push(Box::new(|_| {}), false).expect("room");
        }
        assert!(matches!(
            lanes.push(Box::new(|_| {}), false),
            Err(HashError::Busy)
        ));
        for _ in 0..2 {
            lanes.push(Box::new(|_| {}), true).expect("room first");
        }
        assert!(matches!(
            lanes.push(Box::new(|_| {}), true),
            Err(HashError::Busy)
        ));
        lanes.lock().closed = true;
        for _ in 0..10 {
            assert!(lanes.pop().is_some(), "queued jobs still run");
        }
        assert!(lanes.pop().is_none(), "closed and empty");
    }

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
    fn a_scheme_is_the_algorithm_and_its_cost_without_salt_or_output() {
        let scheme = |h: &str| HashScheme::of(h).map(|s| s.as_str().to_owned());
        let bcrypt_a = bcrypt::hash_with_salt("x", 5, [7; 16]).expect("bcrypt");
        let bcrypt_b = bcrypt::hash("y", 5)
            .expect("bcrypt")
            .replacen("$2b$", "$2y$", 1);
        assert_eq!(
            scheme(&bcrypt_a.format_for_version(bcrypt::Version::TwoA)),
            Some("$2b$05".into())
        );
        assert_eq!(scheme(&bcrypt_b), Some("$2b$05".into()));
        assert_eq!(
            scheme("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"),
            Some("$argon2id$v=19$m=64,t=1,p=1/16".into())
        );
        assert_eq!(
            scheme("$argon2id$v=19$m=64,t=1,p=1$b3RoZXJzYWx0$b3RoZXJoYXNob3RoZXJoYQ"),
            Some("$argon2id$v=19$m=64,t=1,p=1/16".into()),
            "another salt and output, the same scheme"
        );
        assert_eq!(
            scheme("$scrypt$ln=4,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"),
            Some("$scrypt$ln=4,r=8,p=1/16".into())
        );
        assert_eq!(scheme("$md5$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"), None);
        assert_eq!(
            scheme("$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"),
            None,
            "argon2 refuses 1 KiB"
        );
        assert_eq!(scheme("not a hash"), None);
        assert_eq!(scheme("$2b$xx$nonsense"), None);
    }

    #[tokio::test]
    async fn each_scheme_met_is_covered_by_every_later_verification() {
        let h = PasswordHasher::new(CHEAP, 1).await.expect("hasher");
        let current = h.hash(&pw("plover-trombone-91")).await.expect("hash");
        assert_eq!(h.schemes().len(), 1, "all hashes current: one check");
        assert!(!h.learn_scheme(&current).await.expect("learn"));
        let bc = bcrypt::hash("old-school-secret", 4).expect("bcrypt");
        assert!(h.learn_scheme(&bc).await.expect("learn"));
        assert!(
            !h.learn_scheme(&bc).await.expect("learn"),
            "once per scheme"
        );
        let costlier = PasswordHasher::new(
            HashParams {
                memory_kib: 256,
                ..CHEAP
            },
            1,
        )
        .await
        .expect("hasher")
        .hash(&pw("velvet-compass-19"))
        .await
        .expect("hash");
        // Met at a login, not learnt before: added, and verified right.
        let v = h
            .verify(&pw("velvet-compass-19"), Some(&costlier))
            .await
            .expect("verify");
        assert!(v.matches && v.needs_rehash);
        let schemes: Vec<String> = h.schemes().iter().map(|s| s.to_string()).collect();
        assert_eq!(
            schemes,
            [
                "$argon2id$v=19$m=64,t=1,p=1/32",
                "$2b$04",
                "$argon2id$v=19$m=256,t=1,p=1/32"
            ]
        );
        // Every user's hash is still checked in its own scheme.
        for (stored, password) in [
            (&current, "plover-trombone-91"),
            (&bc, "old-school-secret"),
            (&costlier, "velvet-compass-19"),
        ] {
            let right = h.verify(&pw(password), Some(stored)).await.expect("verify");
            assert!(right.matches, "{stored}");
            let wrong = h
                .verify(&pw("nope-nope-nope"), Some(stored))
                .await
                .expect("verify");
            assert!(!wrong.matches, "{stored}");
        }
        // A dummy is a hash of a random password: no password of a user
        // matches it, and no name without a user.
        let v = h
            .verify(&pw("old-school-secret"), None)
            .await
            .expect("verify");
        assert!(!v.matches && !v.needs_rehash);
        // Hashes latchkey cannot read add no scheme and match nothing.
        assert!(!h.learn_scheme("$md5$abc$def").await.expect("learn"));
        let v = h.verify(&pw("x"), Some("garbage")).await.expect("verify");
        assert!(!v.matches);
        assert_eq!(h.schemes().len(), 3);
    }

    #[test]
    fn weak_new_passwords_are_refused() {
        use PasswordRejected::{ControlCharacter, TooGuessable, TooLong, TooShort};
        let long = "é".repeat(600);
        let cases = [
            ("short", "ann", Err(TooShort)),
            ("password1", "ann", Err(TooGuessable)),
            ("annabelle1", "annabelle", Err(TooGuessable)),
            (long.as_str(), "ann", Err(TooLong)),
            ("plover\ttrombone-91", "ann", Err(ControlCharacter)),
            ("plover-trombone-91\n", "ann", Err(ControlCharacter)),
            ("plover-trombone-91", "ann", Ok(())),
            ("grüne Ölkännchen wandern", "ann", Ok(())),
        ];
        for (password, username, expected) in cases {
            assert_eq!(
                check_new_password(&pw(password), username),
                expected,
                "{password:?}"
            );
        }
    }
}
