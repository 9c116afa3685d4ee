//! Check-and-commit cost of `Limiter::admit` (every limit checked, all charged, permit
//! dropped): one hot key, 10,000 keys in turn, and one hot key shared by several threads.
//! Limits are set high so every call is admitted and the full commit path is measured.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smai_auth::limits::Limiter;
use smai_core::{SharedClock, SystemClock, Tier};
use std::sync::Arc;
use std::time::{Duration, Instant};

const UNLIMITED: Tier = Tier { rpm: u32::MAX, tpm: u32::MAX, tpd: u32::MAX, concurrency: u32::MAX };

fn limiter() -> Limiter {
    let clock: SharedClock = Arc::new(SystemClock);
    Limiter::new(clock)
}

fn admit(c: &mut Criterion) {
    let mut group = c.benchmark_group("limiter_admit");
    group.throughput(Throughput::Elements(1));

    let hot = limiter();
    group.bench_function("one_hot_key", |b| b.iter(|| drop(hot.admit("hot-key", &UNLIMITED, 1).expect("admitted"))));

    let spread = limiter();
    let keys: Vec<String> = (0..10_000).map(|i| format!("key-{i:05}")).collect();
    for key in &keys {
        drop(spread.admit(key, &UNLIMITED, 1).expect("admitted"));
    }
    let mut next = 0;
    group.bench_function("10000_keys", |b| {
        b.iter(|| {
            next = (next + 1) % keys.len();
            drop(spread.admit(&keys[next], &UNLIMITED, 1).expect("admitted"))
        })
    });

    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
    let shared = limiter();
    group.bench_function(format!("one_hot_key_{threads}_threads"), |b| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(threads as u64);
            let started = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| {
                        for _ in 0..per_thread {
                            drop(shared.admit("hot-key", &UNLIMITED, 1).expect("admitted"));
                        }
                    });
                }
            });
            // Wall time per admission across all threads: the inverse of total throughput.
            started.elapsed().div_f64((per_thread * threads as u64) as f64 / iters as f64)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = admit
}
criterion_main!(benches);
