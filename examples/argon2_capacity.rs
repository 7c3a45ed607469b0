//! How many logins per second this machine's cores can hash: the ceiling for
//! latchkey's `POST /login`, whose cost is one argon2id hash per attempt.
//!
//! ```text
//! cargo run --release --example argon2_capacity -- [HASHES]
//! ```
//!
//! Hashes with latchkey's default parameters in two ways:
//!
//! - **reused buffer**: every thread allocates argon2's memory once and hashes
//!   in it (`hash_password_into_with_memory`), as latchkey's hashing threads do;
//! - **allocating**: every hash allocates and frees its own buffer
//!   (`hash_password_into`), which adds page faults or zeroing of 19 MiB.
//!
//! For each, it times `HASHES` (default 8) single hashes (the two kinds
//! alternate, so both see the same machine) and then runs `HASHES` hashes on
//! each of one thread per core. It prints one JSON object: the top-level
//! figures are the reused-buffer ones (like for like with latchkey), the same
//! figures for the allocating way are under `allocating`. `capacity_per_s` is
//! cores ÷ the median time of one hash; `parallel_per_s` is the rate the
//! threads actually reached (lower when the cores share caches and memory
//! bandwidth, or are not all there). Used by `bench/run.sh`.
//!
//! The parameters are latchkey's defaults, or the server's own
//! `LATCHKEY_ARGON2_MEMORY_KIB`, `LATCHKEY_ARGON2_ITERATIONS` and
//! `LATCHKEY_ARGON2_PARALLELISM` when they are set, so that a bench run with
//! other parameters compares like with like.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use latchkey::HashParams;

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

/// One hash of a fixed password, as a login's verification computes it: in
/// `memory` when given, else in a buffer allocated for this hash.
fn hash_once(argon2: &Argon2<'_>, memory: Option<&mut [Block]>) -> anyhow::Result<Duration> {
    const PASSWORD: &[u8] = b"correct-tangerine-77-orbit";
    const SALT: &[u8] = b"latchkey-bench-salt";
    let mut out = [0u8; 32];
    let start = Instant::now();
    match memory {
        Some(memory) => argon2.hash_password_into_with_memory(PASSWORD, SALT, &mut out, memory),
        None => argon2.hash_password_into(PASSWORD, SALT, &mut out),
    }
    .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    let took = start.elapsed();
    std::hint::black_box(out);
    Ok(took)
}

fn median_seconds(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64()
}

/// Hashes per second reached by `threads` threads hashing `hashes` times
/// each. Every thread makes one untimed hash first, so both ways are
/// measured in their steady state.
fn parallel_rate(
    argon2: &Argon2<'_>,
    threads: usize,
    hashes: usize,
    reuse: bool,
) -> anyhow::Result<f64> {
    let blocks = argon2.params().block_count();
    let ready = Barrier::new(threads + 1);
    std::thread::scope(|scope| -> anyhow::Result<f64> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let ready = &ready;
                scope.spawn(move || -> anyhow::Result<()> {
                    let mut memory = reuse.then(|| vec![Block::default(); blocks]);
                    let warm_up = hash_once(argon2, memory.as_deref_mut());
                    ready.wait();
                    warm_up?;
                    for _ in 0..hashes {
                        hash_once(argon2, memory.as_deref_mut())?;
                    }
                    Ok(())
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a hashing thread panicked"))??;
        }
        Ok((threads * hashes) as f64 / start.elapsed().as_secs_f64())
    })
}

/// The server's own settings, when the bench gives it non-default ones.
fn params_from_env(mut params: HashParams) -> anyhow::Result<HashParams> {
    for (name, field) in [
        ("LATCHKEY_ARGON2_MEMORY_KIB", &mut params.memory_kib),
        ("LATCHKEY_ARGON2_ITERATIONS", &mut params.iterations),
        ("LATCHKEY_ARGON2_PARALLELISM", &mut params.parallelism),
    ] {
        if let Ok(value) = std::env::var(name) {
            *field = value
                .parse()
                .with_context(|| format!("{name} must be a whole number"))?;
        }
    }
    Ok(params)
}

fn main() -> anyhow::Result<()> {
    let hashes: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("HASHES must be a whole number")?,
        None => 8,
    };
    let hashes = hashes.max(1);
    let params = params_from_env(HashParams::default())?;
    let argon2 = hasher(params)?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);

    let mut memory = vec![Block::default(); argon2.params().block_count()];
    // Warm-up: the first touch of the reused buffer, and of the allocator.
    hash_once(&argon2, Some(&mut memory))?;
    hash_once(&argon2, None)?;
    let (mut reused, mut allocating) = (Vec::new(), Vec::new());
    for _ in 0..hashes {
        reused.push(hash_once(&argon2, Some(&mut memory))?);
        allocating.push(hash_once(&argon2, None)?);
    }
    drop(memory);
    let reused = median_seconds(reused);
    let allocating = median_seconds(allocating);

    let parallel_reused = parallel_rate(&argon2, cores, hashes, true)?;
    let parallel_allocating = parallel_rate(&argon2, cores, hashes, false)?;

    let report = serde_json::json!({
        "memory_kib": params.memory_kib,
        "iterations": params.iterations,
        "parallelism": params.parallelism,
        "cores": cores,
        "hashes": hashes,
        "buffer": "reused",
        "hash_ms_median": reused * 1e3,
        "capacity_per_s": cores as f64 / reused,
        "parallel_per_s": parallel_reused,
        "allocating": {
            "hash_ms_median": allocating * 1e3,
            "capacity_per_s": cores as f64 / allocating,
            "parallel_per_s": parallel_allocating,
        },
    });
    println!("{report}");
    Ok(())
}
