//! A steady mixed load for a long time: does anything go wrong, and does the
//! server's memory stay flat?
//!
//! ```text
//! BENCH_PASSWORD=… LATCHKEY_…=… cargo run --release --example soak -- \
//!     URL USER_PREFIX USERS VICTIMS SECONDS SERVER_PID LATCHKEY_BINARY
//! ```
//!
//! One worker per user `{USER_PREFIX}{i}` (all with the password in
//! `BENCH_PASSWORD`), each in its own cookie jar (so it keeps its device
//! cookie, as a browser does). The first `VICTIMS` users' workers sign in and
//! read `/profile` every few milliseconds until their session is refused
//! (or ten seconds pass, then they sign out); every two seconds the latchkey
//! CLI (run with this process's environment, so with the server's settings)
//! ends every session of one of them, in turn. The other workers loop: sign
//! in, read `/profile` 20 times, sign out.
//!
//! Anything unexpected is an error: a status not expected, a failed
//! connection, a CLI command that fails, a victim's session refused although
//! no revocation of it was made, and a victim's session still accepted by a
//! read sent after a revocation made after its sign-in had returned.
//!
//! Memory is the server's resident set (`VmRSS`), read every second: "start"
//! is taken after the first minute (caches and allocator arenas have
//! grown to their working size by then), "end" at the last second.
//! Prints one JSON object. Used by `bench/run.sh`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use reqwest::{Client, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Profile reads between a sign-in and its sign-out.
const READS_PER_SESSION: usize = 20;
/// A victim's pause between reads, and how long it keeps a session that is
/// not revoked.
const VICTIM_PAUSE: Duration = Duration::from_millis(5);
const VICTIM_SESSION: Duration = Duration::from_secs(10);
/// The README's bound for a change made by another process (the CLI) to
/// reach a read answered from the cache: the change feed's liveness timeout
/// (1 s) and the quarter of it within which a silent feed is noticed.
const STATED_BOUND_US: u64 = 1_250_000;
/// How often the CLI revokes a victim's sessions.
const REVOKE_EVERY: Duration = Duration::from_secs(2);
/// Memory before this is the warm-up.
const WARM_UP: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Counts {
    logins: AtomicU64,
    profiles: AtomicU64,
    logouts: AtomicU64,
    revoked_seen: AtomicU64,
    /// The latest read still answered 200 after a revocation had returned,
    /// in microseconds after it returned.
    stale: AtomicU64,
    revocations: AtomicU64,
    errors: AtomicU64,
    examples: Mutex<Vec<String>>,
}

impl Counts {
    async fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut examples = self.examples.lock().await;
        if examples.len() < 10 {
            examples.push(what);
        }
    }
}

/// The last revocation of one victim: when the CLI was started and when it
/// returned, in microseconds since the soak started (0: none yet).
#[derive(Default)]
struct Revoked {
    started: AtomicU64,
    returned: AtomicU64,
}

/// The soak's own clock, in microseconds: what [`Revoked`] holds.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

struct Worker {
    base: String,
    user: String,
    password: String,
    /// A victim's revocations; `None` for the others.
    victim: Option<Arc<Revoked>>,
    clock: Clock,
    counts: Arc<Counts>,
}

enum Step {
    Done,
    Revoked,
}

impl Worker {
    fn client() -> anyhow::Result<Client> {
        Ok(Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?)
    }

    async fn run(self, until: Instant) {
        let client = match Self::client() {
            Ok(c) => c,
            Err(e) => return self.counts.error(format!("client: {e:#}")).await,
        };
        while Instant::now() < until {
            match self.session(&client, until).await {
                Ok(Step::Done) => {}
                Ok(Step::Revoked) => {
                    self.counts.revoked_seen.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.counts.error(format!("{}: {e:#}", self.user)).await;
                    // Not a tight loop of failures.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// One session, from sign-in to sign-out (or to its revocation).
    async fn session(&self, client: &Client, soak_ends: Instant) -> anyhow::Result<Step> {
        let login_sent = self.clock.now();
        let r = client
            .post(format!("{}/login", self.base))
            .header(header::ACCEPT, "application/json")
            .json(&json!({"username": self.user, "password": self.password}))
            .send()
            .await?;
        if r.status() != StatusCode::OK {
            bail!("sign-in answered {}", r.status());
        }
        let body: Value = r.json().await?;
        let token = body["csrf_token"]
            .as_str()
            .context("no CSRF token")?
            .to_owned();
        let signed_in = self.clock.now();
        self.counts.logins.fetch_add(1, Ordering::Relaxed);
        if let Some(revoked) = &self.victim {
            let until = soak_ends.min(Instant::now() + VICTIM_SESSION);
            while Instant::now() < until {
                let sent = self.clock.now();
                match self.profile(client).await? {
                    StatusCode::OK => {
                        let (started, returned) = (
                            revoked.started.load(Ordering::SeqCst),
                            revoked.returned.load(Ordering::SeqCst),
                        );
                        // Only a revocation that has returned (while the CLI
                        // runs, `started` is newer than `returned`).
                        if returned >= started && started > signed_in && sent > returned {
                            let late = sent - returned;
                            self.counts.stale.fetch_max(late, Ordering::Relaxed);
                            if late > STATED_BOUND_US {
                                bail!(
                                    "a read sent {late} µs after a revocation returned was answered 200"
                                );
                            }
                        }
                    }
                    StatusCode::UNAUTHORIZED => {
                        // A revocation that was running while this session
                        // existed: still running, or returned after the
                        // sign-in was sent.
                        let (started, returned) = (
                            revoked.started.load(Ordering::SeqCst),
                            revoked.returned.load(Ordering::SeqCst),
                        );
                        let running = started != 0 && returned < started;
                        if !running && returned <= login_sent {
                            bail!("GET /profile answered 401, but no revocation was made");
                        }
                        return Ok(Step::Revoked);
                    }
                    other => bail!("GET /profile answered {other}"),
                }
                tokio::time::sleep(VICTIM_PAUSE).await;
            }
        } else {
            for _ in 0..READS_PER_SESSION {
                match self.profile(client).await? {
                    StatusCode::OK => {}
                    other => bail!("GET /profile answered {other}"),
                }
            }
        }
        let status = client
            .post(format!("{}/logout", self.base))
            .header(header::ACCEPT, "application/json")
            .header(header::ORIGIN, &self.base)
            .header("x-csrf-token", token)
            .send()
            .await?
            .status();
        // A victim's session may have been revoked between its last read and
        // the sign-out, which then has nobody to sign out.
        if !(status.is_success() || status == StatusCode::SEE_OTHER || self.victim.is_some()) {
            bail!("sign-out answered {status}");
        }
        self.counts.logouts.fetch_add(1, Ordering::Relaxed);
        Ok(Step::Done)
    }

    async fn profile(&self, client: &Client) -> anyhow::Result<StatusCode> {
        let status = client
            .get(format!("{}/profile", self.base))
            .header(header::ACCEPT, "application/json")
            .send()
            .await?
            .status();
        if status == StatusCode::OK {
            self.counts.profiles.fetch_add(1, Ordering::Relaxed);
        }
        Ok(status)
    }
}

fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

async fn revoke(binary: &str, user: &str) -> anyhow::Result<()> {
    let out = tokio::process::Command::new(binary)
        .args(["session", "revoke", "--user", user])
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "`latchkey session revoke --user {user}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, prefix, users, victims, seconds, pid, binary] = args.as_slice() else {
        bail!(
            "usage: soak URL USER_PREFIX USERS VICTIMS SECONDS SERVER_PID LATCHKEY_BINARY \
             (password in BENCH_PASSWORD)"
        );
    };
    let users: usize = users.parse().context("USERS")?;
    let victims: usize = victims.parse().context("VICTIMS")?;
    let seconds: u64 = seconds.parse().context("SECONDS")?;
    let pid: u32 = pid.parse().context("SERVER_PID")?;
    let password = std::env::var("BENCH_PASSWORD").context("BENCH_PASSWORD is not set")?;
    if victims > users {
        bail!("more victims than users");
    }

    let started = Instant::now();
    let clock = Clock(started);
    let until = started + Duration::from_secs(seconds);
    let counts = Arc::new(Counts::default());
    let revoked: Vec<Arc<Revoked>> = (0..victims).map(|_| Arc::default()).collect();
    let workers: Vec<_> = (0..users)
        .map(|i| {
            tokio::spawn(
                Worker {
                    base: base.clone(),
                    user: format!("{prefix}{i}"),
                    password: password.clone(),
                    victim: revoked.get(i).cloned(),
                    clock,
                    counts: counts.clone(),
                }
                .run(until),
            )
        })
        .collect();

    let first = rss_mb(pid).context("the server's memory cannot be read")?;
    let (mut start, mut end, mut max) = (None, first, first);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut next_revocation = started + REVOKE_EVERY;
    let mut victim = 0;
    while Instant::now() < until {
        tick.tick().await;
        let Some(rss) = rss_mb(pid) else {
            bail!("the server is gone");
        };
        if start.is_none() && started.elapsed() >= WARM_UP {
            start = Some(rss);
        }
        end = rss;
        max = max.max(rss);
        if victims > 0 && Instant::now() >= next_revocation {
            next_revocation += REVOKE_EVERY;
            let user = format!("{prefix}{victim}");
            let record = &revoked[victim];
            victim = (victim + 1) % victims;
            record.started.store(clock.now(), Ordering::SeqCst);
            match revoke(binary, &user).await {
                Ok(()) => {
                    record.returned.store(clock.now(), Ordering::SeqCst);
                    counts.revocations.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => counts.error(format!("{e:#}")).await,
            }
        }
    }
    for w in workers {
        w.await?;
    }
    // Each revocation ends at most one session of its victim, so it can
    // be seen at most once.
    let revocations = counts.revocations.load(Ordering::Relaxed);
    let seen = counts.revoked_seen.load(Ordering::Relaxed);
    if seen > revocations {
        counts
            .error(format!(
                "victims saw {seen} revocations, but only {revocations} were made"
            ))
            .await;
    }
    let start = start.unwrap_or(first);
    let examples = counts.examples.lock().await.clone();
    println!(
        "{}",
        json!({
            "seconds": started.elapsed().as_secs(),
            "users": users,
            "victims": victims,
            "logins": counts.logins.load(Ordering::Relaxed),
            "profiles": counts.profiles.load(Ordering::Relaxed),
            "logouts": counts.logouts.load(Ordering::Relaxed),
            "revocations": revocations,
            "revoked_seen": seen,
            "latest_stale_read_us": counts.stale.load(Ordering::Relaxed),
            "errors": counts.errors.load(Ordering::Relaxed),
            "error_examples": examples,
            "rss_mb": {
                "first": first,
                "start": start,
                "end": end,
                "max": max,
                "change": (end - start) / start,
            },
        })
    );
    Ok(())
}
