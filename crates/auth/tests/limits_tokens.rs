//! Tokens per minute and per day: charging, all-or-none, refunds, streams and costs that no
//! wait can satisfy.

use smai_auth::limits::{asr_tokens, tts_tokens, LimitKind, Limiter};
use smai_core::{ErrorCode, ManualClock, Tier};
use std::sync::Arc;
use std::time::Duration;

// On a whole second, so slot arithmetic below is easy to follow.
const START_MS: i64 = 1_700_000_000_000;

fn limiter() -> (Limiter, ManualClock) {
    let clock = ManualClock::new(START_MS);
    (Limiter::new(Arc::new(clock.clone())), clock)
}

#[test]
fn tokens_per_minute_refuse_and_name_the_wait() {
    let (limiter, clock) = limiter();
    let tier = Tier { tpm: 1_000, ..Tier::default() };
    drop(limiter.admit("key", &tier, 600).unwrap());
    clock.advance_ms(10_500);
    drop(limiter.admit("key", &tier, 300).unwrap());
    let rejection = limiter.admit("key", &tier, 200).expect_err("1,100 > 1,000");
    assert_eq!(rejection.limit, LimitKind::TokensPerMinute);
    assert_eq!(rejection.snapshot.tokens.remaining, 100);
    // The 600 tokens charged at 0 s are counted until 61 s.
    assert_eq!(rejection.retry_after, Duration::from_millis(61_000 - 10_500));
    clock.advance_ms(61_000 - 10_500 - 1);
    assert_eq!(limiter.admit("key", &tier, 200).unwrap_err().limit, LimitKind::TokensPerMinute);
    clock.advance_ms(1);
    let admitted = limiter.admit("key", &tier, 200).expect("admitted when retry_after said");
    assert_eq!(admitted.snapshot.tokens.remaining, 500);
}

#[test]
fn a_token_rejection_consumes_no_request_and_a_request_rejection_no_tokens() {
    let (limiter, _clock) = limiter();
    let tier = Tier { rpm: 2, tpm: 100, ..Tier::default() };
    drop(limiter.admit("key", &tier, 90).unwrap());
    for _ in 0..10 {
        assert_eq!(limiter.admit("key", &tier, 20).unwrap_err().limit, LimitKind::TokensPerMinute);
    }
    let second = limiter.admit("key", &tier, 10).expect("the token refusals took no request");
    assert_eq!(second.snapshot.requests.remaining, 0);
    assert_eq!(second.snapshot.tokens.remaining, 0);

    let other = Tier { rpm: 1, tpm: 100, ..Tier::default() };
    drop(limiter.admit("other", &other, 10).unwrap());
    let refused = limiter.admit("other", &other, 10).unwrap_err();
    assert_eq!(refused.limit, LimitKind::RequestsPerMinute);
    assert_eq!(refused.snapshot.tokens.remaining, 90, "the request refusal charged no tokens");
    assert_eq!(limiter.snapshot("other", &other).tokens_per_day.remaining, u64::from(other.tpd) - 10);
}

#[test]
fn a_cost_above_a_limit_is_refused_as_hopeless() {
    let (limiter, _clock) = limiter();
    let tier = Tier::default();
    let rejection = limiter.admit("key", &tier, 50_001).unwrap_err();
    assert!(rejection.cannot_succeed);
    assert_eq!(rejection.limit, LimitKind::TokensPerMinute);
    assert!(rejection.message.contains("retrying cannot help"), "{}", rejection.message);
    assert_eq!(rejection.snapshot.requests.remaining, 60, "nothing consumed");
    let error = rejection.into_error();
    assert_eq!(error.code, ErrorCode::RateLimitExceeded);
    assert!(error.retry_after.is_none(), "no Retry-After when retrying cannot help");

    let daily = Tier { tpm: 2_000_000, tpd: 1_000_000, ..Tier::default() };
    let rejection = limiter.admit("key", &daily, 1_000_001).unwrap_err();
    assert!(rejection.cannot_succeed);
    assert_eq!(rejection.limit, LimitKind::TokensPerDay);
    limiter.admit("key", &daily, 1_000_000).expect("exactly the limit fits");
}

#[test]
fn tokens_per_day_roll_over_a_day_and_a_slot() {
    let (limiter, clock) = limiter();
    let tier = Tier { tpm: 1_000, tpd: 2_500, ..Tier::default() };
    for _ in 0..2 {
        drop(limiter.admit("key", &tier, 1_000).unwrap());
        clock.advance_ms(61_000);
    }
    drop(limiter.admit("key", &tier, 500).unwrap());
    clock.advance_ms(61_000);
    let rejection = limiter.admit("key", &tier, 1).unwrap_err();
    assert_eq!(rejection.limit, LimitKind::TokensPerDay);
    assert_eq!(rejection.snapshot.tokens_per_day.remaining, 0);
    // The first charge sits in the 15-minute slot containing START_MS.
    let slot_start = START_MS - START_MS.rem_euclid(900_000);
    let counted_until = slot_start + 86_400_000 + 900_000;
    let now = START_MS + 3 * 61_000;
    assert_eq!(rejection.retry_after, Duration::from_millis((counted_until - now) as u64));
    clock.set_ms(counted_until - 1);
    assert!(limiter.admit("key", &tier, 1).is_err());
    clock.set_ms(counted_until);
    limiter.admit("key", &tier, 1).expect("the whole first slot has rolled out");
}

#[test]
fn streams_charge_chunk_by_chunk_and_stop_at_the_limit() {
    let (limiter, _clock) = limiter();
    let tier = Tier { tpm: 100, ..Tier::default() };
    let admission = limiter.admit("key", &tier, 10).unwrap();
    for chunk in 1..=9 {
        let snapshot = limiter.charge_more("key", &tier, 10).expect("under the limit");
        assert_eq!(snapshot.tokens.remaining, 100 - 10 - 10 * chunk);
        assert_eq!(snapshot.requests.remaining, 59, "chunks are not requests");
        assert_eq!(snapshot.concurrency_open, 1);
    }
    let refused = limiter.charge_more("key", &tier, 1).unwrap_err();
    assert_eq!(refused.limit, LimitKind::TokensPerMinute);
    assert!(limiter.charge_more("key", &tier, 101).unwrap_err().cannot_succeed);
    drop(admission);
}

#[test]
fn refunds_give_tokens_back_to_both_windows() {
    let (limiter, _clock) = limiter();
    let tier = Tier { tpm: 100, ..Tier::default() };
    drop(limiter.admit("key", &tier, 80).unwrap());
    assert!(limiter.admit("key", &tier, 30).is_err());
    limiter.refund("key", 50);
    let snapshot = limiter.snapshot("key", &tier);
    assert_eq!(snapshot.tokens.remaining, 70);
    assert_eq!(snapshot.tokens_per_day.remaining, u64::from(tier.tpd) - 30);
    limiter.admit("key", &tier, 30).expect("refunded tokens are usable");
}

#[test]
fn costs_are_counted_as_api_md_says() {
    let (limiter, _clock) = limiter();
    let tier = Tier::default();
    let text = "Grüße, 世界!";
    let admission = limiter.admit("key", &tier, tts_tokens(text)).unwrap();
    assert_eq!(admission.snapshot.tokens.remaining, 50_000 - 10);
    // 2.05 s of 16 kHz audio: 21 started tenths of a second.
    let admission = limiter.admit("key", &tier, asr_tokens(32_800, 16_000)).unwrap();
    assert_eq!(admission.snapshot.tokens.remaining, 50_000 - 10 - 21);
}
