//! How long a signed-out session stays usable on *another* instance: signs
//! in on instance A, makes instance B cache the session, signs out on A,
//! and from the moment A acknowledged the sign-out replays the cookie
//! against B in a tight loop until B refuses it.
//!
//! ```text
//! BENCH_PASSWORD=… cargo run --release --example revocation_window -- \
//!     http://127.0.0.1:8080 http://127.0.0.1:8081 USER [ROUNDS]
//! ```
//!
//! Prints one JSON object: per round, the window is the time from A's
//! acknowledgement to the start of the first request that B refused (0 when
//! the first one after the acknowledgement was refused), and `stale` counts
//! the requests B still accepted after the acknowledgement. Used by
//! `bench/run.sh`; every instance must share the database (and session
//! store), and allow this many sign-ins from one address
//! (`LATCHKEY_LOGIN_RATE`).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use reqwest::{Client, StatusCode, header};
use serde_json::{Value, json};

/// Gives up on a round after this long: a window this wide is a failure.
const GIVE_UP: Duration = Duration::from_secs(10);

async fn profile(client: &Client, base: &str, cookie: &str) -> anyhow::Result<StatusCode> {
    Ok(client
        .get(format!("{base}/profile"))
        .header(header::ACCEPT, "application/json")
        .header(header::COOKIE, format!("latchkey={cookie}"))
        .send()
        .await?
        .status())
}

/// One round: the window in microseconds and the stale acceptances.
async fn round(
    client: &Client,
    a: &str,
    b: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<(u64, u64)> {
    let r = client
        .post(format!("{a}/login"))
        .header(header::ACCEPT, "application/json")
        .json(&json!({"username": user, "password": password}))
        .send()
        .await?;
    if r.status() != StatusCode::OK {
        bail!("sign-in on A answered {}", r.status());
    }
    let cookie = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("latchkey="))
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?
        .to_owned();
    let body: Value = r.json().await?;
    let token = body["csrf_token"]
        .as_str()
        .context("no CSRF token")?
        .to_owned();
    // The first look-up on B reads the store and caches; the next ones are
    // answered from the cache, which is what the window is about.
    for _ in 0..3 {
        if profile(client, b, &cookie).await? != StatusCode::OK {
            bail!("B did not accept the fresh session");
        }
    }
    let out = client
        .post(format!("{a}/logout"))
        .header(header::ACCEPT, "application/json")
        .header(header::COOKIE, format!("latchkey={cookie}"))
        .header(header::ORIGIN, a)
        .header("x-csrf-token", token)
        .send()
        .await?;
    let acknowledged = Instant::now();
    if !(out.status().is_success() || out.status().is_redirection()) {
        bail!("sign-out on A answered {}", out.status());
    }
    let mut stale = 0;
    loop {
        let sent = Instant::now();
        match profile(client, b, &cookie).await? {
            StatusCode::UNAUTHORIZED => {
                let window = sent.duration_since(acknowledged);
                return Ok((u64::try_from(window.as_micros()).unwrap_or(u64::MAX), stale));
            }
            StatusCode::OK => stale += 1,
            other => bail!("B answered {other}"),
        }
        if acknowledged.elapsed() > GIVE_UP {
            bail!("B still accepted the session {GIVE_UP:?} after the sign-out");
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [a, b, user, rest @ ..] = args.as_slice() else {
        bail!("usage: revocation_window URL_A URL_B USER [ROUNDS] (password in BENCH_PASSWORD)");
    };
    let rounds: usize = rest.first().map_or(Ok(300), |r| r.parse())?;
    let password = std::env::var("BENCH_PASSWORD").context("BENCH_PASSWORD is not set")?;
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut windows = Vec::with_capacity(rounds);
    let (mut stale_total, mut stale_rounds) = (0, 0);
    for _ in 0..rounds {
        let (window, stale) = round(&client, a, b, user, &password).await?;
        windows.push(window);
        stale_total += stale;
        stale_rounds += u64::from(stale > 0);
    }
    windows.sort_unstable();
    println!(
        "{}",
        json!({
            "rounds": rounds,
            "stale_requests": stale_total,
            "rounds_with_stale": stale_rounds,
            "window_us": {
                "p50": percentile(&windows, 50.0),
                "p90": percentile(&windows, 90.0),
                "p99": percentile(&windows, 99.0),
                "max": windows.last().copied().unwrap_or(0),
            },
        })
    );
    Ok(())
}
