//! Whatever the sequence of requests, no window admits more than its quota (plus GCRA's
//! documented burst for requests), a retry after `retry_after` succeeds, and many threads or
//! tasks on one key never get more than the quota between them.

use proptest::prelude::*;
use smai_auth::limits::{LimitKind, Limiter};
use smai_core::{ManualClock, Tier};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
const TIER: Tier = Tier { rpm: 5, tpm: 50, tpd: 120, concurrency: 1_000 };

#[derive(Debug, Clone)]
struct Step {
    advance_ms: i64,
    tokens: u64,
    retry_when_told: bool,
}

fn step() -> impl Strategy<Value = Step> {
    let advance = prop_oneof![6 => 0i64..3_000, 3 => 0i64..120_000, 1 => 0i64..(6 * 3_600_000)];
    (advance, 0u64..=60, any::<bool>()).prop_map(|(advance_ms, tokens, retry_when_told)| Step {
        advance_ms,
        tokens,
        retry_when_told,
    })
}

/// Largest sum over admissions whose times fall in any half-open window `[t, t + len)`.
fn busiest_window(admitted: &[(i64, u64)], len: i64) -> u64 {
    admitted
        .iter()
        .map(|&(start, _)| admitted.iter().filter(|(t, _)| *t >= start && *t < start + len).map(|(_, n)| n).sum())
        .max()
        .unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn no_window_admits_more_than_its_quota(steps in prop::collection::vec(step(), 1..250)) {
        let clock = ManualClock::new(1_700_000_000_000);
        let limiter = Limiter::new(Arc::new(clock.clone()));
        let mut now = 1_700_000_000_000i64;
        let mut admitted = Vec::new();
        for step in steps {
            clock.advance_ms(step.advance_ms);
            now += step.advance_ms;
            match limiter.admit("key", &TIER, step.tokens) {
                Ok(_) => admitted.push((now, step.tokens)),
                Err(rejection) if rejection.cannot_succeed => {
                    prop_assert!(step.tokens > u64::from(TIER.tpm));
                }
                Err(rejection) => {
                    prop_assert!(rejection.limit != LimitKind::Concurrency);
                    if step.retry_when_told {
                        let wait_ms = rejection.retry_after.as_nanos().div_ceil(1_000_000) as i64;
                        clock.advance_ms(wait_ms);
                        now += wait_ms;
                        prop_assert!(limiter.admit("key", &TIER, step.tokens).is_ok(),
                            "refused again after waiting {} ms as told", wait_ms);
                        admitted.push((now, step.tokens));
                    }
                }
            }
        }
        let requests: Vec<(i64, u64)> = admitted.iter().map(|&(t, _)| (t, 1)).collect();
        // GCRA: at most rpm + ⌊w / (60 s / rpm)⌋ in any interval of length w (here w < 60 s).
        let emission_ms = MINUTE_MS / i64::from(TIER.rpm);
        let request_bound = u64::from(TIER.rpm) + ((MINUTE_MS - 1) / emission_ms) as u64;
        prop_assert!(busiest_window(&requests, MINUTE_MS) <= request_bound);
        prop_assert!(busiest_window(&admitted, MINUTE_MS) <= u64::from(TIER.tpm));
        prop_assert!(busiest_window(&admitted, DAY_MS) <= u64::from(TIER.tpd));
    }
}

#[test]
fn many_threads_on_one_key_get_exactly_the_quota() {
    let limiter = Limiter::new(Arc::new(ManualClock::new(1_700_000_000_000)));
    let requests = Tier { rpm: 1_000, tpm: 10_000_000, tpd: 10_000_000, concurrency: 10_000 };
    let tokens = Tier { rpm: 100_000, tpm: 10_000, tpd: 10_000_000, concurrency: 10_000 };
    for (key, tier, cost, quota) in [("requests", requests, 1, 1_000), ("tokens", tokens, 7, 10_000 / 7)] {
        let admitted = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..2_000 {
                        if limiter.admit(key, &tier, cost).is_ok() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), quota, "{key}");
    }
}

#[test]
fn many_threads_never_hold_more_permits_than_the_limit() {
    let limiter = Limiter::new(Arc::new(ManualClock::new(1_700_000_000_000)));
    let tier = Tier { rpm: 1_000_000, tpm: 10_000_000, tpd: 10_000_000, concurrency: 5 };
    let inside = AtomicU32::new(0);
    let most = AtomicU32::new(0);
    let admitted = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..5_000 {
                    if let Ok(admission) = limiter.admit("key", &tier, 1) {
                        let now_inside = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now_inside, Ordering::SeqCst);
                        admitted.fetch_add(1, Ordering::Relaxed);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(admission);
                    }
                }
            });
        }
    });
    assert!(most.load(Ordering::SeqCst) <= 5);
    assert!(admitted.load(Ordering::Relaxed) > 0);
    assert_eq!(limiter.snapshot("key", &tier).concurrency_open, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_on_one_key_get_exactly_the_quota_while_idle_keys_are_swept() {
    let limiter = Limiter::new(Arc::new(ManualClock::new(1_700_000_000_000)));
    let tier = Tier { rpm: 500, tpm: 10_000_000, tpd: 10_000_000, concurrency: 10_000 };
    let sweeper = {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            for _ in 0..2_000 {
                limiter.sweep();
                tokio::task::yield_now().await;
            }
        })
    };
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let mut admitted = 0u64;
                for _ in 0..100 {
                    if limiter.admit("key", &tier, 1).is_ok() {
                        admitted += 1;
                    }
                    tokio::task::yield_now().await;
                }
                admitted
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    sweeper.await.unwrap();
    assert_eq!(total, 500);
}
