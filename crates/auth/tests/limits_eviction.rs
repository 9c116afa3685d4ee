//! Memory stays bounded: entries of keys that went idle are dropped.

use smai_auth::limits::Limiter;
use smai_core::{ManualClock, Tier};
use std::sync::Arc;

const KEYS: usize = 100_000;

fn limiter() -> (Limiter, ManualClock) {
    let clock = ManualClock::new(1_700_000_000_000);
    (Limiter::new(Arc::new(clock.clone())), clock)
}

#[test]
fn a_hundred_thousand_idle_keys_leave_no_entries() {
    let (limiter, clock) = limiter();
    let tier = Tier::default();
    for i in 0..KEYS {
        drop(limiter.admit(&format!("key-{i}"), &tier, 0).unwrap());
    }
    assert_eq!(limiter.tracked_keys(), KEYS);
    assert_eq!(limiter.sweep(), 0, "every key still has a request in its bucket");
    clock.advance_ms(1_000);
    assert_eq!(limiter.sweep(), KEYS, "the bucket of 60 RPM refills one request in a second");
    assert_eq!(limiter.tracked_keys(), 0);
}

#[test]
fn keys_with_daily_usage_stay_until_it_rolls_out() {
    let (limiter, clock) = limiter();
    let tier = Tier::default();
    for i in 0..KEYS {
        drop(limiter.admit(&format!("key-{i}"), &tier, 10).unwrap());
    }
    clock.advance_ms(61_000);
    limiter.sweep();
    assert_eq!(limiter.tracked_keys(), KEYS, "dropping them would forget their daily usage");
    assert_eq!(limiter.snapshot("key-7", &tier).tokens_per_day.remaining, 1_000_000 - 10);
    clock.advance_ms(86_400_000 + 900_000);
    limiter.sweep();
    assert_eq!(limiter.tracked_keys(), 0);
}

#[test]
fn open_requests_keep_their_entry() {
    let (limiter, clock) = limiter();
    let tier = Tier::default();
    let held = limiter.admit("streaming", &tier, 0).unwrap();
    drop(limiter.admit("done", &tier, 0).unwrap());
    clock.advance_ms(3_600_000);
    assert_eq!(limiter.sweep(), 1);
    assert_eq!(limiter.snapshot("streaming", &tier).concurrency_open, 1);
    drop(held);
    assert_eq!(limiter.sweep(), 1);
    assert_eq!(limiter.tracked_keys(), 0);
}
