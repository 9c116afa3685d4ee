//! Requests per minute, headers and the error a rejection becomes.

use smai_auth::limits::{LimitKind, Limiter};
use smai_core::{ErrorCode, ManualClock, Tier};
use std::sync::Arc;
use std::time::Duration;

const START_MS: i64 = 1_700_000_000_000;

fn limiter() -> (Limiter, ManualClock) {
    let clock = ManualClock::new(START_MS);
    (Limiter::new(Arc::new(clock.clone())), clock)
}

fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> &'a str {
    headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn request_61_of_60_waits_exactly_as_long_as_retry_after_says() {
    let (limiter, clock) = limiter();
    let tier = Tier::default();
    for i in 0..60 {
        let admission = limiter.admit("key", &tier, 0).unwrap_or_else(|r| panic!("request {i}: {}", r.message));
        assert_eq!(admission.snapshot.requests.remaining, 59 - i, "remaining drops by exactly one");
    }
    let rejection = limiter.admit("key", &tier, 0).expect_err("request 61 must be refused");
    assert_eq!(rejection.limit, LimitKind::RequestsPerMinute);
    assert!(!rejection.cannot_succeed);
    assert_eq!(rejection.retry_after, Duration::from_secs(1));
    assert_eq!(header(&rejection.headers(), "retry-after"), "1");
    assert_eq!(rejection.snapshot.requests.remaining, 0);

    clock.advance_ms(999);
    let early = limiter.admit("key", &tier, 0).expect_err("one millisecond early is still refused");
    assert_eq!(early.retry_after, Duration::from_millis(1));
    clock.advance_ms(1);
    limiter.admit("key", &tier, 0).expect("admitted exactly at retry_after");
    assert!(limiter.admit("key", &tier, 0).is_err(), "and only that one request");
}

#[test]
fn rejected_requests_do_not_use_up_the_bucket() {
    let (limiter, clock) = limiter();
    let tier = Tier { rpm: 2, ..Tier::default() };
    limiter.admit("key", &tier, 0).unwrap();
    limiter.admit("key", &tier, 0).unwrap();
    for _ in 0..50 {
        assert!(limiter.admit("key", &tier, 0).is_err());
    }
    clock.advance_ms(30_000);
    limiter.admit("key", &tier, 0).expect("refusals consumed nothing");
}

#[test]
fn keys_have_separate_budgets() {
    let (limiter, _clock) = limiter();
    let tier = Tier { rpm: 1, ..Tier::default() };
    limiter.admit("org-a-key", &tier, 0).unwrap();
    assert!(limiter.admit("org-a-key", &tier, 0).is_err());
    limiter.admit("org-b-key", &tier, 0).expect("another key is not affected");
}

#[test]
fn headers_are_exactly_the_api_set_with_openai_style_resets() {
    let (limiter, _clock) = limiter();
    let admission = limiter.admit("key", &Tier::default(), 1_200).unwrap();
    let headers = admission.snapshot.headers();
    let names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
            "ratelimit-policy",
            "ratelimit",
        ]
    );
    assert_eq!(header(&headers, "x-ratelimit-limit-requests"), "60");
    assert_eq!(header(&headers, "x-ratelimit-remaining-requests"), "59");
    assert_eq!(header(&headers, "x-ratelimit-reset-requests"), "1s");
    assert_eq!(header(&headers, "x-ratelimit-limit-tokens"), "50000");
    assert_eq!(header(&headers, "x-ratelimit-remaining-tokens"), "48800");
    // Charged in the slot starting now; counted until the window has passed it by a slot.
    assert_eq!(header(&headers, "x-ratelimit-reset-tokens"), "1m1s");
    assert_eq!(
        header(&headers, "ratelimit-policy"),
        "\"rpm\";q=60;w=60, \"tpm\";q=50000;w=60, \"tpd\";q=1000000;w=86400"
    );
    assert_eq!(header(&headers, "ratelimit"), "\"rpm\";r=59;t=1, \"tpm\";r=48800;t=61, \"tpd\";r=998800;t=86500");
}

#[test]
fn structured_fields_parse_as_rfc_8941_lists() {
    use sfv::{BareItem, ListEntry, Parser};
    let (limiter, _clock) = limiter();
    let admission = limiter.admit("key", &Tier::default(), 10).unwrap();
    let headers = admission.snapshot.headers();
    for (name, expected) in [
        ("ratelimit-policy", vec![("rpm", vec![("q", 60), ("w", 60)]), ("tpm", vec![("q", 50_000), ("w", 60)])]),
        ("ratelimit", vec![("rpm", vec![("r", 59), ("t", 1)]), ("tpm", vec![("r", 49_990), ("t", 61)])]),
    ] {
        let list = Parser::parse_list(header(&headers, name).as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(list.len(), 3, "{name}: rpm, tpm and tpd");
        for (entry, (policy, params)) in list.iter().zip(expected) {
            let ListEntry::Item(item) = entry else { panic!("{name}: inner list") };
            assert_eq!(item.bare_item, BareItem::String(policy.into()));
            for (param, value) in params {
                let found = item.params.get(param).unwrap_or_else(|| panic!("{name}: no {param}"));
                assert_eq!(found, &BareItem::Integer(value), "{name} {policy} {param}");
            }
        }
    }
}

#[test]
fn rejections_become_429_errors_with_retry_after() {
    let (limiter, _clock) = limiter();
    let tier = Tier { rpm: 1, ..Tier::default() };
    let _first = limiter.admit("key", &tier, 0).unwrap();
    let rejection = limiter.admit("key", &tier, 0).unwrap_err();
    let error = rejection.into_error();
    assert_eq!(error.code, ErrorCode::RateLimitExceeded);
    assert_eq!(error.retry_after, Some(Duration::from_secs(60)));
    assert!(error.message.contains("1 requests per minute"), "{}", error.message);
}

#[test]
fn snapshot_charges_nothing() {
    let (limiter, _clock) = limiter();
    let tier = Tier::default();
    let fresh = limiter.snapshot("key", &tier);
    assert_eq!(fresh.requests.remaining, 60);
    limiter.admit("key", &tier, 0).unwrap();
    for _ in 0..5 {
        assert_eq!(limiter.snapshot("key", &tier).requests.remaining, 59);
    }
}
