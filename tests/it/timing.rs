//! Timing: whether a user name exists cannot be told from how long a failed
//! sign-in takes, whatever algorithm and cost the user's stored hash has.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common;

use common::{PASSWORD, TestApp, base_env};
use reqwest::StatusCode;

/// Requests timed per kind of name.
const SAMPLES: usize = 200;

/// How far apart the median times of a known and an unknown name may be.
const TOLERANCE: f64 = 0.05;

/// Rounds of [`SAMPLES`] each, at most, for one to come out within
/// [`TOLERANCE`].
const ROUNDS: usize = 3;

/// An argon2id hash of [`PASSWORD`] at 8 MiB: eight times the cost of the
/// test servers' own 1 MiB, as after an administrator lowered
/// `LATCHKEY_ARGON2_MEMORY_KIB` (or an import from a system with dearer
/// settings).
fn odd_argon2_hash() -> String {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, Version};
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(8 * 1024, 1, 1, None).unwrap(),
    )
    .hash_password_with_salt(PASSWORD.as_bytes(), b"oddsaltoddsaltod")
    .unwrap()
    .to_string()
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// One failed JSON sign-in, timed from the client.
async fn timed_failure(app: &TestApp, name: &str) -> Duration {
    let started = Instant::now();
    let status = app.login_json(name, "not-the-password-42").await.status();
    let took = started.elapsed();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
    took
}

/// The median time of a failed sign-in for each name, over [`SAMPLES`]
/// each, interleaved and each round in another order, so that a moment of
/// load on a shared machine falls on every name alike; and for each known
/// name, the median over rounds of its time ÷ the unknown name's in the same
/// round (paired: load that changes from second to second cancels out).
async fn median_times(app: &TestApp, names: [&str; 3]) -> ([Duration; 3], [f64; 2]) {
    let mut times = [const { Vec::new() }; 3];
    for round in 0..SAMPLES {
        for k in 0..names.len() {
            let i = (round + k) % names.len();
            times[i].push(timed_failure(app, names[i]).await);
        }
    }
    let paired = |known: usize| {
        let mut ratios: Vec<f64> = times[known]
            .iter()
            .zip(&times[2])
            .map(|(k, u)| k.as_secs_f64() / u.as_secs_f64())
            .collect();
        ratios.sort_unstable_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    };
    let ratios = [paired(0), paired(1)];
    (times.map(|mut t| median(&mut t)), ratios)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sign_in_takes_as_long_for_an_unknown_name_as_for_any_stored_hash() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    // Before the server starts: it learns the schemes in use at start-up.
    common::plant_users(
        &dir.path().join("latchkey.db"),
        &[
            ("odd", odd_argon2_hash()),
            ("imported", bcrypt::hash(PASSWORD, 5).unwrap()),
        ],
    )
    .await;
    let mut env = base_env(&dir);
    // Hundreds of wrong passwords from one address: no lock may end them.
    for (k, v) in [
        ("LATCHKEY_LOGIN_MAX_FAILURES", "100000"),
        ("LATCHKEY_LOGIN_IP_MAX_FAILURES", "100000"),
        ("LATCHKEY_LOGIN_RATE", "100000"),
    ] {
        env.push((k.to_owned(), v.to_owned()));
    }
    let app = TestApp::start(dir, env).await;
    assert_eq!(
        app.auth.hasher().schemes().len(),
        3,
        "the start-up read the schemes in use: today's, the odd argon2 and bcrypt"
    );
    let names = ["odd", "imported", "nobody-by-this-name"];
    for name in names {
        timed_failure(&app, name).await;
    }
    // A round that other work on a shared machine upset may be measured
    // again; without constant-time logins every round is far apart (the
    // known names took 2 to 3 times and 1.3 to 1.4 times as long as the
    // unknown one), so this cannot hide it.
    let mut rounds = Vec::new();
    let close = loop {
        let ([odd, imported, unknown], [odd_ratio, imported_ratio]) =
            median_times(&app, names).await;
        let (odd_gap, imported_gap) = ((odd_ratio - 1.0).abs(), (imported_ratio - 1.0).abs());
        rounds.push(format!(
            "median failed sign-in: odd argon2 {odd:?} ({:.1} % off the unknown name's in \
             the same round, median), bcrypt {imported:?} ({:.1} % off), unknown {unknown:?}",
            odd_gap * 100.0,
            imported_gap * 100.0
        ));
        eprintln!("{}", rounds[rounds.len() - 1]);
        if odd_gap <= TOLERANCE && imported_gap <= TOLERANCE {
            break true;
        }
        if rounds.len() == ROUNDS {
            break false;
        }
    };
    assert!(
        close,
        "known names are told from unknown ones by time in every round: {rounds:#?}"
    );
    // Each user's own hash was checked all along: their passwords work.
    for name in ["odd", "imported"] {
        assert_eq!(
            app.login_json(name, PASSWORD).await.status(),
            StatusCode::OK
        );
    }
}
