//! Micro-benchmarks of the work latchkey does on every request: checking the
//! cookie's signature, hashing the token into a store key, deriving and
//! comparing the CSRF token, and loading the session from each store.
//!
//! ```text
//! cargo bench --bench hot_paths              # full run
//! cargo bench --bench hot_paths -- --quick   # a few seconds
//! ```
//!
//! The store lookups are async: each sample runs its whole batch of lookups
//! inside one `block_on`, so the runtime's entry cost is not counted per lookup.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use criterion::{Criterion, criterion_group, criterion_main};
use latchkey::ServerSecret;
use latchkey::internals::{CookieSigner, CsrfKeys, SessionToken, tokens_match};
use latchkey::store::{MemoryStore, NewUser, SessionKey, SessionRecord, Stores, now_millis};

/// Sessions put into each store before lookups, so that an index is walked.
const SESSIONS: usize = 10_000;

fn secret() -> ServerSecret {
    ServerSecret::new("hot-paths-benchmark-secret-0123456789abcdef").expect("a 43-byte secret")
}

fn cookies(c: &mut Criterion) {
    let signer = CookieSigner::new(&secret());
    let other = CookieSigner::new(
        &ServerSecret::new("another-benchmark-secret-0123456789abcdefgh")
            .expect("a 43-byte secret"),
    );
    let token = SessionToken::generate();
    let good = signer.sign(&token);
    let forged = other.sign(&token);

    let mut group = c.benchmark_group("cookie");
    group.bench_function("sign", |b| b.iter(|| signer.sign(black_box(&token))));
    group.bench_function("verify valid", |b| {
        b.iter(|| signer.verify(black_box(&good)))
    });
    group.bench_function("verify forged", |b| {
        b.iter(|| signer.verify(black_box(&forged)))
    });
    group.bench_function("verify garbage", |b| {
        b.iter(|| signer.verify(black_box("not-a-cookie")))
    });
    group.finish();

    c.bench_function("token key (SHA-256)", |b| {
        b.iter(|| black_box(&token).key())
    });
}

fn csrf(c: &mut Criterion) {
    let keys = CsrfKeys::new(&secret());
    let key = SessionToken::generate().key();
    let expected = keys.session_token(&key);
    let provided = expected.clone();
    let mut wrong = expected.clone();
    wrong.replace_range(0..1, if wrong.starts_with('A') { "B" } else { "A" });

    let mut group = c.benchmark_group("csrf");
    group.bench_function("session token", |b| {
        b.iter(|| keys.session_token(black_box(&key)))
    });
    group.bench_function("tokens match", |b| {
        b.iter(|| tokens_match(black_box(&expected), black_box(&provided)))
    });
    group.bench_function("tokens differ", |b| {
        b.iter(|| tokens_match(black_box(&expected), black_box(&wrong)))
    });
    group.bench_function("derive and check", |b| {
        b.iter(|| tokens_match(&keys.session_token(black_box(&key)), black_box(&provided)))
    });
    group.finish();
}

/// A user and `SESSIONS` sessions; returns the key of one of them.
async fn fill(stores: &Stores) -> anyhow::Result<SessionKey> {
    let user = stores
        .users
        .create_user(NewUser {
            username: "bench".into(),
            username_key: "bench".into(),
            password_hash: "$argon2id$not-used-here".into(),
            roles: vec!["admin".into()],
            display_name: None,
            email: None,
        })
        .await
        .context("creating the user")?;
    let mut middle = None;
    for n in 0..SESSIONS {
        let key = SessionToken::generate().key();
        let now = now_millis();
        let record = SessionRecord {
            key,
            user_id: user.id,
            credential_epoch: user.credential_epoch,
            roles_epoch: user.roles_epoch,
            created_at: now,
            last_seen: now,
        };
        stores
            .sessions
            .create(&record)
            .await
            .context("creating a session")?;
        if n == SESSIONS / 2 {
            middle = Some(key);
        }
    }
    middle.context("no session was made")
}

/// Times `iters` lookups of `key` (and of a missing key) inside one `block_on`.
fn bench_lookups(
    c: &mut Criterion,
    name: &str,
    rt: &tokio::runtime::Runtime,
    stores: &Stores,
    key: SessionKey,
) {
    let missing = SessionToken::generate().key();
    let mut group = c.benchmark_group(format!("session load/{name}"));
    for (label, key) in [("hit", key), ("miss", missing)] {
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let found = stores
                            .sessions
                            .load(black_box(&key))
                            .await
                            .expect("the store answers");
                        black_box(found);
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
}

fn stores(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");

    let memory = Stores::single(MemoryStore::default());
    let key = rt
        .block_on(fill(&memory))
        .expect("filling the memory store");
    bench_lookups(c, "memory", &rt, &memory, key);

    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sqlite = rt
        .block_on(Stores::open(&url))
        .expect("opening the SQLite store");
    let key = rt
        .block_on(fill(&sqlite))
        .expect("filling the SQLite store");
    bench_lookups(c, "sqlite", &rt, &sqlite, key);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = cookies, csrf, stores
}
criterion_main!(benches);
