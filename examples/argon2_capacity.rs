//! How many logins per second this machine's cores can hash: the ceiling for
//! latchkey's `POST /login`, whose cost is one argon2id hash per attempt.
//!
//! ```text
//! cargo run --release --example argon2_capacity -- [HASHES]
//! ```
//!
//! Times `HASHES` (default 8) single hashes with latchkey's default parameters
//! and prints one JSON object: the median time of one hash, the estimate
//! `cores / median`, and the rate actually reached with one hashing thread per
//! core (lower when the cores share memory bandwidth). Used by `bench/run.sh`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use argon2::{Algorithm, Argon2, Params, Version};
use latchkey::password::HashParams;

fn hasher(params: HashParams) -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .map_err(|e| anyhow::anyhow!("argon2 refused the parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// One hash of a fixed password, as a login's verification computes it.
fn hash_once(argon2: &Argon2<'_>) -> anyhow::Result<Duration> {
    let mut out = [0u8; 32];
    let start = Instant::now();
    argon2
        .hash_password_into(
            b"correct-tangerine-77-orbit",
            b"latchkey-bench-salt",
            &mut out,
        )
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    let took = start.elapsed();
    std::hint::black_box(out);
    Ok(took)
}

fn main() -> anyhow::Result<()> {
    let hashes: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("HASHES must be a whole number")?,
        None => 8,
    };
    let hashes = hashes.max(1);
    let params = HashParams::default();
    let argon2 = hasher(params)?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);

    hash_once(&argon2)?; // warm-up: first touch of the memory
    let mut times = (0..hashes)
        .map(|_| hash_once(&argon2))
        .collect::<anyhow::Result<Vec<_>>>()?;
    times.sort();
    let median = times[times.len() / 2].as_secs_f64();

    let start = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..cores)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    for _ in 0..hashes {
                        hash_once(&argon2)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a hashing thread panicked"))??;
        }
        Ok(())
    })?;
    let parallel = (cores * hashes) as f64 / start.elapsed().as_secs_f64();

    let report = serde_json::json!({
        "memory_kib": params.memory_kib,
        "iterations": params.iterations,
        "parallelism": params.parallelism,
        "cores": cores,
        "hashes": hashes,
        "hash_ms_median": median * 1e3,
        "capacity_per_s": cores as f64 / median,
        "parallel_per_s": parallel,
    });
    println!("{report}");
    Ok(())
}
