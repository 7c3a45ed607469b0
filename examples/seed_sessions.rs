//! Seeds sessions for one user straight into a latchkey database, through the
//! library's store API, so the benchmark can measure a large session table
//! without signing in a million times.
//!
//! ```text
//! LATCHKEY_SECRET=... cargo run --release --example seed_sessions -- \
//!     --database-url sqlite:///tmp/latchkey.db --count 1000000 \
//!     --cookies /tmp/cookies.txt --sample 1000
//! ```
//!
//! The user (default `bench`) must exist. With `--cookies`, `--sample` of the
//! new sessions, spread evenly over the whole run, are written as signed cookie
//! values, one per line; signing needs the server's secret (`LATCHKEY_SECRET`).
//! Prints one JSON object with the count and the insert rate. Used by
//! `bench/run.sh`.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Parser;
use latchkey::ServerSecret;
use latchkey::internals::{CookieSigner, SessionToken};
use latchkey::store::{SessionRecord, SessionStore, Stores, now_millis};

/// Inserts sessions for one user.
#[derive(Debug, Parser)]
struct Args {
    /// `sqlite://PATH` or `postgres://…`, as the server uses.
    #[arg(long)]
    database_url: String,
    /// How many sessions to insert.
    #[arg(long)]
    count: u64,
    /// Whose sessions (the normalised username).
    #[arg(long, default_value = "bench")]
    user: String,
    /// Where to write signed cookie values of a sample of the sessions.
    #[arg(long, value_name = "FILE")]
    cookies: Option<PathBuf>,
    /// How many cookie values to write.
    #[arg(long, default_value_t = 1000)]
    sample: u64,
    /// Inserts in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: u64,
}

/// The fields every seeded session shares.
#[derive(Clone)]
struct Template {
    user: latchkey::store::UserId,
    credential_epoch: i64,
    roles_epoch: i64,
}

/// Inserts sessions number `start`, `start + step`, … below `count`; returns
/// the tokens of those whose number is a multiple of `stride`.
async fn insert_share(
    sessions: Arc<dyn SessionStore>,
    template: Template,
    (start, step, count, stride): (u64, u64, u64, u64),
) -> anyhow::Result<Vec<SessionToken>> {
    let mut kept = Vec::new();
    let mut n = start;
    while n < count {
        let token = SessionToken::generate();
        let now = now_millis();
        let record = SessionRecord {
            key: token.key(),
            user_id: template.user,
            credential_epoch: template.credential_epoch,
            roles_epoch: template.roles_epoch,
            created_at: now,
            last_seen: now,
        };
        sessions
            .create(&record)
            .await
            .with_context(|| format!("inserting session {n}"))?;
        if n % stride == 0 {
            kept.push(token);
        }
        n += step;
    }
    Ok(kept)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let signer = match &args.cookies {
        Some(_) => {
            let secret = std::env::var("LATCHKEY_SECRET")
                .context("--cookies needs LATCHKEY_SECRET to sign the cookie values")?;
            Some(CookieSigner::new(&ServerSecret::new(&secret)?))
        }
        None => None,
    };
    let stores = Stores::open(&args.database_url)
        .await
        .context("opening the database")?;
    let Some(user) = stores.users.user_by_key(&args.user).await? else {
        bail!(
            "no user {:?}: create it first (latchkey user add)",
            args.user
        );
    };
    let template = Template {
        user: user.id,
        credential_epoch: user.credential_epoch,
        roles_epoch: user.roles_epoch,
    };
    let stride = (args.count / args.sample.max(1)).max(1);
    let workers = args.concurrency.clamp(1, 256);

    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let share = (w, workers, args.count, stride);
        tasks.spawn(insert_share(
            stores.sessions.clone(),
            template.clone(),
            share,
        ));
    }
    let mut tokens = Vec::new();
    while let Some(done) = tasks.join_next().await {
        tokens.extend(done.context("an insert task panicked")??);
    }
    let seconds = start.elapsed().as_secs_f64();

    if let (Some(path), Some(signer)) = (&args.cookies, &signer) {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        for token in tokens.iter().take(usize::try_from(args.sample)?) {
            writeln!(out, "{}", signer.sign(token))?;
        }
        out.flush()?;
    }
    let report = serde_json::json!({
        "count": args.count,
        "seconds": seconds,
        "per_s": args.count as f64 / seconds.max(1e-9),
    });
    println!("{report}");
    Ok(())
}
