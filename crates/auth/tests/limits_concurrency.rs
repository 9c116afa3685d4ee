//! Concurrency: open requests and streams per key, and every way a permit is given back.

use smai_auth::limits::{Admission, LimitKind, Limiter, CONCURRENCY_RETRY};
use smai_core::{ErrorCode, ManualClock, Tier};
use std::sync::Arc;

fn limiter() -> Limiter {
    Limiter::new(Arc::new(ManualClock::new(1_700_000_000_000)))
}

fn open(limiter: &Limiter, tier: &Tier) -> u32 {
    limiter.snapshot("key", tier).concurrency_open
}

#[test]
fn the_sixth_concurrent_request_is_refused_as_concurrency() {
    let limiter = limiter();
    let tier = Tier::default();
    let held: Vec<Admission> = (0..5).map(|_| limiter.admit("key", &tier, 1).unwrap()).collect();
    assert_eq!(held[4].snapshot.concurrency_open, 5);
    let rejection = limiter.admit("key", &tier, 1).unwrap_err();
    assert_eq!(rejection.limit, LimitKind::Concurrency);
    assert_eq!(rejection.retry_after, CONCURRENCY_RETRY);
    assert_eq!(rejection.snapshot.requests.remaining, 55, "the refusal took no request");
    assert_eq!(rejection.snapshot.tokens.remaining, 50_000 - 5, "nor tokens");
    let error = rejection.into_error();
    assert_eq!(error.code, ErrorCode::ConcurrencyLimitExceeded);
    assert_eq!(error.code.as_str(), "concurrency_limit_exceeded");
    drop(held);
    limiter.admit("key", &tier, 1).expect("slots are free again");
}

#[test]
fn completion_and_error_paths_release_the_permit() {
    let limiter = limiter();
    let tier = Tier { concurrency: 1, ..Tier::default() };
    fn handler(limiter: &Limiter, tier: &Tier, fail: bool) -> Result<u32, String> {
        let admission = limiter.admit("key", tier, 1).map_err(|r| r.message)?;
        if fail {
            return Err("inference failed".into());
        }
        Ok(admission.snapshot.concurrency_open)
    }
    assert_eq!(handler(&limiter, &tier, false), Ok(1));
    assert_eq!(open(&limiter, &tier), 0);
    assert_eq!(handler(&limiter, &tier, true), Err("inference failed".into()));
    assert_eq!(open(&limiter, &tier), 0);
    assert_eq!(handler(&limiter, &tier, false), Ok(1));
}

#[test]
fn a_panic_releases_the_permit() {
    let limiter = limiter();
    let tier = Tier { concurrency: 1, ..Tier::default() };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _admission = limiter.admit("key", &tier, 1).unwrap();
        panic!("handler bug");
    }));
    assert!(result.is_err());
    assert_eq!(open(&limiter, &tier), 0);
    limiter.admit("key", &tier, 1).expect("the slot came back");
}

#[tokio::test]
async fn a_panicking_task_releases_the_permit() {
    let limiter = limiter();
    let tier = Tier { concurrency: 1, ..Tier::default() };
    let task_limiter = limiter.clone();
    let task = tokio::spawn(async move {
        let _admission = task_limiter.admit("key", &tier, 1).unwrap();
        tokio::task::yield_now().await;
        panic!("handler bug");
    });
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(open(&limiter, &tier), 0);
}

#[tokio::test]
async fn a_client_disconnect_releases_the_permit() {
    // A disconnect drops the request's future; aborting the task does exactly that.
    let limiter = limiter();
    let tier = Tier { concurrency: 1, ..Tier::default() };
    let (admitted_tx, admitted_rx) = tokio::sync::oneshot::channel();
    let task_limiter = limiter.clone();
    let stream = tokio::spawn(async move {
        let _admission = task_limiter.admit("key", &tier, 1).unwrap();
        admitted_tx.send(()).unwrap();
        std::future::pending::<()>().await;
    });
    admitted_rx.await.unwrap();
    assert_eq!(open(&limiter, &tier), 1);
    assert_eq!(limiter.admit("key", &tier, 1).unwrap_err().limit, LimitKind::Concurrency);
    stream.abort();
    assert!(stream.await.unwrap_err().is_cancelled());
    assert_eq!(open(&limiter, &tier), 0);
    limiter.admit("key", &tier, 1).expect("the slot came back");
}
